"""rlspec.templates: jinja2 templates for the build folder. Templates only format; decisions live in rlspec.compiler."""
