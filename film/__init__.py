"""jvideo film: a script becomes a film. Shots come from the footage library where it has them
(montage) and from the video diffusion model where it does not (jvideo), with every character's
reference image keeping its look the same from shot to shot."""
