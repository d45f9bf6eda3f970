"""The on-disk format of docs/FORMAT.md: array documents and chunk files (layout), array writes, reads
and checksums (arrays), Parquet tables (tables), what readers check (integrity), generations."""
