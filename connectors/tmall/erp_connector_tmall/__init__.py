"""Taobao/Tmall (TOP) sales channel connector with its platform sandbox."""
