package broker_test

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/broker"
	"github.com/fso-project/fso/internal/broker/brokertest"
)

// BenchmarkJetStreamFloor measures what the broker alone costs per record,
// the floor under FSO's pipeline CPU: b.N messages of 400 bytes published
// asynchronously with a Nats-Msg-Id, at a paced rate, into the FSO stream,
// consumed by the recorder's durable consumer and acked in groups every
// 50ms, as the agent and the recorder do, but with nothing else (no inotify,
// no spool, no audit log). The metric is CPU seconds (user+system, the whole
// process) per 10,000 messages.
//
//	go test -run '^$' -bench JetStreamFloor -benchtime 5000x ./internal/broker
func BenchmarkJetStreamFloor(b *testing.B) {
	for _, rate := range []int{1000, 16000} {
		for _, burst := range []int{1, 4} {
			b.Run(fmt.Sprintf("rate=%d/burst=%d", rate, burst), func(b *testing.B) { floor(b, rate, burst) })
		}
	}
}

func floor(b *testing.B, rate, burst int) {
	br := brokertest.Start(b)
	js := br.JetStream(b)
	sub, err := jetstream.New(br.Conn(b))
	if err != nil {
		b.Fatal(err)
	}
	cons, err := sub.Consumer(b.Context(), broker.Stream, broker.RecorderDurable)
	if err != nil {
		b.Fatal(err)
	}
	var (
		mu   sync.Mutex
		acks []jetstream.Msg
		got  = make(chan struct{}, b.N)
	)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		mu.Lock()
		acks = append(acks, m)
		mu.Unlock()
		got <- struct{}{}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			mu.Lock()
			for _, m := range acks {
				m.Ack()
			}
			acks = acks[:0]
			mu.Unlock()
		}
	}()
	payload := make([]byte, 400)
	interval := time.Second / time.Duration(rate)
	before := cpu()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		// Messages go out burst at a time, at the paced rate on average.
		if d := time.Until(start.Add(time.Duration(i-i%burst) * interval)); d > 0 {
			time.Sleep(d)
		}
		m := nats.NewMsg(fmt.Sprintf("fso.events.a%d.create", i%4))
		m.Data = payload
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("a:%d", i))
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
	}
	for range b.N {
		<-got
	}
	b.StopTimer()
	b.ReportMetric((cpu()-before).Seconds()*10000/float64(b.N), "cpu-s/10k-msgs")
}

func cpu() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
