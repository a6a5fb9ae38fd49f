module github.com/parleychat/parley/deploy/healthcheck

go 1.26
