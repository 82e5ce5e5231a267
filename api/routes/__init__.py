"""HTTP routes. Each declares its roles; none holds a business rule."""
