"""Write-a-video montage: index a footage library, cut text into a film. Never imports Jittor."""
