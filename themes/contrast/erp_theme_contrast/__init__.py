"""A high-contrast dark variant of the default theme: it overrides the stylesheet block only."""
