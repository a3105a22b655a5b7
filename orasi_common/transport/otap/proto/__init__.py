"""Generated OTAP protobuf messages (scripts/generate-proto.sh regenerates them; never edit)."""
