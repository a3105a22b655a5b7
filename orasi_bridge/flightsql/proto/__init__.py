"""Generated Flight SQL protobuf messages (generate.sh regenerates them from FlightSql.proto; never edit)."""
