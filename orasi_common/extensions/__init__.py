"""Extensions every service can run (outside pipelines): ``etcd`` registration, ``auth`` (bearer
tokens and JWTs), ``ratelimit`` (per-tenant rate limits)."""
