"""Alipay payment channel connector with its platform sandbox."""
