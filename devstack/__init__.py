"""The local stack: the bundle on one machine without Docker (moto, Postgres, fake providers)."""
