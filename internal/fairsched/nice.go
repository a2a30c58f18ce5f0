package fairsched

import (
	"fmt"
	"runtime"
)

// The threads of expensive calls. A call of at least HeavyCost runs, once
// it has its slot, on one of Workers goroutines locked to OS threads
// whose nice value is Config.Nice above the daemon's: while such calls keep every core busy,
// the kernel still runs at once what wakes up at normal priority — the
// daemon's transport (reading the next request, of any app) and the
// applications' own processes. Without it another app's call waits for
// the kernel to preempt a signing thread at every wake-up on its way
// (docs/performance.md: p99 11-17 ms instead of 2.5-4 ms under the
// issue's flood). A thread's nice value can only be raised without
// privilege, so these threads never run anything else; cheap calls run
// on the caller's goroutine, with no handoff.

// HeavyCost is the least cost (an Ed448 signature) that runs on a
// low-priority thread.
const HeavyCost = 4 * Unit

// DefaultNice is how much those threads raise their nice value by
// default: enough for the kernel to run a woken normal thread first,
// little enough that on a host busy with other work the daemon's
// expensive calls keep most of their share (docs/performance.md).
const DefaultNice = 2

// heavyPool runs functions on threads of lowered priority.
type heavyPool struct {
	jobs chan *job
}

type job struct {
	f    func()
	done chan struct{}
	err  error
}

// newHeavyPool starts n locked threads, nice raised by nice; it returns
// nil (calls run on their callers' threads) if nice is 0, and an error if
// the threads cannot be set (the daemon then refuses to start, naming
// [scheduler] nice: an operator who asked for it is told, not ignored).
func newHeavyPool(n, nice int) (*heavyPool, error) {
	if nice == 0 {
		return nil, nil
	}
	p := &heavyPool{jobs: make(chan *job)}
	errs := make(chan error, n)
	for range n {
		go p.worker(nice, errs)
	}
	for range n {
		if err := <-errs; err != nil {
			close(p.jobs)
			return nil, err
		}
	}
	return p, nil
}

func (p *heavyPool) worker(nice int, started chan<- error) {
	runtime.LockOSThread() // never unlocked: the thread keeps its nice value and dies with the goroutine
	if err := setThreadNice(nice); err != nil {
		started <- fmt.Errorf("setting the nice value of a worker thread: %w", err)
		return
	}
	started <- nil
	for j := range p.jobs {
		j.run()
	}
}

func (j *job) run() {
	j.err = recovered(j.f)
	close(j.done)
}

// run runs f on a pool thread and returns when it is done, with
// recovered's error if f panicked (the thread lives on).
func (p *heavyPool) run(f func()) error {
	j := &job{f: f, done: make(chan struct{})}
	p.jobs <- j
	<-j.done
	return j.err
}
