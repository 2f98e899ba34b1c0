module github.com/sensorgate/sensorgate

go 1.26.8

require github.com/tinylib/msgp v1.6.5

require (
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/philhofer/fwd v1.2.0 // indirect
	golang.org/x/mod v0.27.0 // indirect
	golang.org/x/sync v0.20.0 // indirect
	golang.org/x/tools v0.36.0 // indirect
)

tool github.com/tinylib/msgp
