//go:build !unix

package buffer

func diskFree(dir string) int64 { return -1 }
