"""OVA inputs: a tar of an OVF descriptor, its disks and an optional manifest."""
