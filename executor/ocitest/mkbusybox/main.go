// Command mkbusybox writes a tiny busybox OCI image layout into DIR:
//
//	go run ./executor/ocitest/mkbusybox DIR
package main

import (
	"fmt"
	"os"

	"github.com/stockade-hpc/stockade/executor/ocitest"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mkbusybox DIR")
		os.Exit(2)
	}
	if err := ocitest.BuildBusybox(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "mkbusybox:", err)
		os.Exit(1)
	}
}
