// A tiny xtaci/smux echo server for the interop test (tests/smux_interop.rs): the agent's smux
// settings (smux.DefaultConfig, version 1, agent port_mux.go) except a short keepalive so the
// test sees NOPs both ways. It listens on 127.0.0.1:0, prints the port, serves one connection,
// echoes every stream until EOF, and exits by itself after 60 s.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/xtaci/smux"
)

func main() {
	time.AfterFunc(60*time.Second, func() { os.Exit(3) })
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(listener.Addr().(*net.TCPAddr).Port)
	conn, err := listener.Accept()
	if err != nil {
		panic(err)
	}
	config := smux.DefaultConfig()
	config.Version = 1
	config.KeepAliveInterval = 500 * time.Millisecond
	config.KeepAliveTimeout = 2 * time.Second
	session, err := smux.Server(conn, config)
	if err != nil {
		panic(err)
	}
	for {
		stream, err := session.AcceptStream()
		if err != nil {
			fmt.Fprintln(os.Stderr, "session ended:", err)
			os.Exit(0)
		}
		go func() {
			io.Copy(stream, stream)
			stream.Close()
		}()
	}
}
