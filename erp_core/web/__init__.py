"""Server-rendered web pages (Jinja2 + jinja2-fragments + htmx)."""
