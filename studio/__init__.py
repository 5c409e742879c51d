"""Studio: a local web editor where editing the script re-cuts the film (`jvideo studio`).

The server (studio.app, Flask) keeps one project: the script, pins, never-use shots, generate
requests and idiom settings (studio.session), plans it incrementally against a footage library
with montage.plan and re-renders the cut in the background through montage's render cache
(studio.engine). The page (studio/static) is plain JavaScript served from this package.
"""
