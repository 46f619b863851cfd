"""Inventory: SKUs, warehouses and locations, stock moves, quants, reservations, valuation."""
