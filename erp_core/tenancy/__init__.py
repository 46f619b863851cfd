"""Tenancy: tenants, per-tenant settings and plugin enablement."""
