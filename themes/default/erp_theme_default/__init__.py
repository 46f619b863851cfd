"""The default theme: the page shell (top bar, navigation, user menu), styles and htmx."""
