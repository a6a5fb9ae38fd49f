module github.com/parleychat/parley/services/presence

go 1.26

require github.com/parleychat/parley/libs v0.0.0

replace github.com/parleychat/parley/libs => ../../libs
