"""imagepack: prepare virtual-machine disk images offline, before they are uploaded to a cloud."""

__version__ = "0.1.0"
