"""marginsim: deploy, drive and measure the marginsim Vyper margin protocol."""

__version__ = "0.1.0"
