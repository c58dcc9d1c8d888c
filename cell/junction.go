package cell

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/cellproject/cell/internal/junction"
)

// The gap junction's place in a connection (docs/synapse.md): after both
// prefaces agreed on it, the client sends the offer (the memfd and eventfds
// with SCM_RIGHTS), the server answers one byte, 1 when it mapped the
// memory and 0 when it could not; with 1, every frame from then on travels
// through the rings, and the socket only tells each side of the other's
// death (EOF).

// junctionOffer is the client's side before the server accepted.
type junctionOffer struct{ o *junction.Offer }

func newJunctionOffer() (*junctionOffer, error) {
	o, err := junction.NewOffer(junction.DefaultRing)
	if err != nil {
		return nil, err
	}
	return &junctionOffer{o: o}, nil
}

func (jo *junctionOffer) close() { jo.o.Close() }

// send hands the offer over and reads the server's answer.
func (jo *junctionOffer) send(nc net.Conn) (bool, error) {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return false, errors.New("not a unix socket")
	}
	if err := jo.o.Send(uc); err != nil {
		return false, err
	}
	var ack [1]byte
	if _, err := io.ReadFull(nc, ack[:]); err != nil {
		return false, fmt.Errorf("read answer: %w", truncated(err))
	}
	switch ack[0] {
	case 0:
		return false, nil
	case 1:
		return true, nil
	}
	return false, fmt.Errorf("%w: junction answer %d", ErrMalformed, ack[0])
}

// attach moves ch onto the offer's junction.
func (jo *junctionOffer) attach(ch *channel) error {
	j, err := jo.o.Open()
	if err != nil {
		return err
	}
	useJunction(ch, j)
	return nil
}

// acceptJunction receives the client's offer on nc and answers it; on
// success ch runs over the junction. A junction that cannot be mapped is
// answered 0 and the connection stays on the socket.
func acceptJunction(nc net.Conn, ch *channel) error {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Write([]byte{0})
		return nil
	}
	j, err := junction.Accept(uc)
	if err != nil {
		if _, werr := nc.Write([]byte{0}); werr != nil {
			return werr
		}
		return nil
	}
	if _, err := nc.Write([]byte{1}); err != nil {
		j.Close()
		return err
	}
	useJunction(ch, j)
	return nil
}

// useJunction switches ch's reads and writes to j, and watches the socket:
// its EOF (the peer's death or close) closes the junction, which fails
// whatever waits on it.
func useJunction(ch *channel, j *junction.Junction) {
	nc := ch.nc
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		var b [1]byte
		nc.Read(b[:]) // nothing more is sent on the socket: any result ends it
		j.Close()
	}()
	// The frame reader's buffer takes a batch of frames out of the ring in
	// one look at the producer's index.
	ch.r = junctionReader{j}
	ch.out = func(b *net.Buffers) error { return j.WriteBuffers(*b) }
	ch.junc = j
	ch.idle.Store(true)
	ch.abort = func() { j.Close() }
	ch.interrupt = j.InterruptRead
	ch.closeFn = func() error {
		err := nc.Close()
		j.Close()
		<-watched
		return err
	}
}

// junctionReader maps the junction's closing to the end of the stream,
// and an interrupted read to the deadline a socket's reader would see.
type junctionReader struct{ j *junction.Junction }

func (r junctionReader) Read(p []byte) (int, error) {
	n, err := r.j.Read(p)
	switch {
	case errors.Is(err, junction.ErrClosed):
		err = io.EOF
	case errors.Is(err, junction.ErrInterrupted):
		err = os.ErrDeadlineExceeded
	}
	return n, err
}
