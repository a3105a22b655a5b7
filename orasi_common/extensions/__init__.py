"""Extensions every service can run (outside pipelines): ``etcd`` registration."""
