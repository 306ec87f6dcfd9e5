// A tiny xtaci/smux echo server for the interop test (tests/smux_interop.rs): the agent's smux
// settings (smux.DefaultConfig, version 1, agent port_mux.go) except a short keepalive so the
// test sees NOPs both ways. It listens on 127.0.0.1:0, prints the port, serves one connection,
// echoes every stream until EOF, and exits by itself after 60 s.
//
// After the port it reports on stdout, one line each, what the test cannot see from its side:
// every NOP ("nop") and FIN ("fin SID") that arrived from the client, read off the connection
// below smux, and every stream whose echo ended ("echoed SID BYTES", after its FIN was sent).
package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/xtaci/smux"
)

var reportLock sync.Mutex

func report(format string, args ...interface{}) {
	reportLock.Lock()
	defer reportLock.Unlock()
	fmt.Printf(format+"\n", args...)
}

// frameLog passes the client's bytes to smux unchanged and follows its frames (smux v1: version,
// command, little-endian u16 length, little-endian u32 stream id, then the payload).
type frameLog struct {
	net.Conn
	header [8]byte
	have   int // header bytes of the current frame read so far
	skip   int // payload bytes of the current frame still to pass
}

func (c *frameLog) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.scan(p[:n])
	return n, err
}

func (c *frameLog) scan(b []byte) {
	for len(b) > 0 {
		if c.skip > 0 {
			k := c.skip
			if k > len(b) {
				k = len(b)
			}
			c.skip -= k
			b = b[k:]
			continue
		}
		k := copy(c.header[c.have:], b)
		c.have += k
		b = b[k:]
		if c.have < len(c.header) {
			return
		}
		c.have = 0
		c.skip = int(binary.LittleEndian.Uint16(c.header[2:4]))
		sid := binary.LittleEndian.Uint32(c.header[4:8])
		switch c.header[1] {
		case 1:
			report("fin %d", sid)
		case 3:
			report("nop")
		}
	}
}

func main() {
	time.AfterFunc(60*time.Second, func() { os.Exit(3) })
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	report("%d", listener.Addr().(*net.TCPAddr).Port)
	conn, err := listener.Accept()
	if err != nil {
		panic(err)
	}
	config := smux.DefaultConfig()
	config.Version = 1
	config.KeepAliveInterval = 500 * time.Millisecond
	config.KeepAliveTimeout = 2 * time.Second
	session, err := smux.Server(&frameLog{Conn: conn}, config)
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
			n, _ := io.Copy(stream, stream)
			stream.Close()
			report("echoed %d %d", stream.ID(), n)
		}()
	}
}
