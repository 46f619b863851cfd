"""Kernel API routers."""
