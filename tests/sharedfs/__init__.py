"""Tests on a shared file system: real SeaweedFS servers and FUSE mounts (``tests/support/seaweedfs.py``)."""
