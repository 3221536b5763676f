"""The content store: blobs by digest, written through resumable ingests."""
