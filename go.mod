module github.com/ternmq/mqtt

go 1.26
