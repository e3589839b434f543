"""The backend contract: ``BaseGenerator``, the ``Generator`` protocol, ``Capabilities``,
``BackendSpec``, the shared input checks, model location and cache folders."""
