"""Oracle Cloud Infrastructure .oci archives: layout, metadata, and the commands built on them."""
