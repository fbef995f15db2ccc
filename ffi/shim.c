/*
 * deno-vmm halt/wake shim: the few things an EMT cannot do from JavaScript.
 *
 * The mechanism VirtualBox calls GVMMR0SchedHalt / SchedWakeUp / SchedPoke, in user space:
 *
 *   shim_halt(emt, deadline, kind)  block until shim_wake() or an absolute CLOCK_MONOTONIC
 *                                   deadline; publish HALTED, re-check the wake token, sleep
 *                                   on a futex (optionally after a short spin: halt polling).
 *   shim_wake(emt)                  set the wake token and always futex-wake, so a wake that
 *                                   races ahead of the halt is never lost.
 *   shim_poke(emt)                  force an EMT out of KVM_RUN: set immediate_exit and send
 *                                   SHIM_SIGNAL to its thread, only while it is in guest mode.
 *   shim_run(emt, deadline)         KVM_RUN that returns at the first exit, a poke, or the
 *                                   deadline (one per-thread POSIX timer, re-armed only when
 *                                   the deadline changes).
 *   shim_extend(emt, old, new)      from another thread: move a running EMT's deadline later
 *                                   (a renewed slice) without an exit.
 *
 * The per-EMT block (struct shim_emt) lives in memory the caller provides (a
 * SharedArrayBuffer), so the TypeScript side reads the counters with Atomics and no call.
 * Its layout is fixed: src/emt/shim_layout.ts mirrors it and tests/shim_test.ts checks it
 * against shim_layout() below.
 *
 * References: KVM API documentation (Documentation/virt/kvm/api.rst: KVM_RUN,
 * kvm_run.immediate_exit and "the signal mask ... to avoid races"), futex(2)
 * (FUTEX_WAIT_BITSET takes an absolute timeout on the chosen clock), timer_create(2)
 * (SIGEV_THREAD_ID).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* SIGRTMIN+4: glibc reserves the first real-time signals; Deno uses SIGUSR1 (inspector). */
#define SHIM_SIGNAL_OFFSET 4

enum shim_state { EMT_HOST = 0, EMT_GUEST = 1, EMT_HALTED = 2 };

/* Results of shim_run beyond KVM's own exit reasons (which are all < 64). */
#define SHIM_RUN_POKED 100    /* a poke arrived (before entry or during KVM_RUN) */
#define SHIM_RUN_DEADLINE 101 /* the run deadline had passed */
/* Results of shim_halt. */
#define SHIM_HALT_WOKEN 0
#define SHIM_HALT_TIMEOUT 1

#define SHIM_EXIT_REASONS 40

/* Counters, one u64 each, at offset 64. Order mirrored in src/emt/shim_layout.ts. */
enum shim_counter {
  C_RUNS,          /* KVM_RUN entries */
  C_HALTS,         /* shim_halt calls that slept or spun (kind 0: guest halt) */
  C_WAKES,         /* shim_wake calls received */
  C_POKES,         /* pokes that found the EMT in guest mode and signalled it */
  C_NS_GUEST,      /* ns inside KVM_RUN */
  C_NS_HALTED,     /* ns in shim_halt, kind 0 (guest HLT) */
  C_NS_WAIT_GRANT, /* ns in shim_halt, kind 1 (waiting for a scheduler grant) */
  C_DEADLINES,     /* runs that ended at their deadline */
  C_INTR,          /* KVM_RUN returned EINTR (poke or timer signal) */
  C_GRANT_WAITS,   /* shim_halt calls of kind 1 */
  C_ENTERED_AT,    /* CLOCK_MONOTONIC ns of the KVM_RUN in progress (0: not in one), so that a
                      reader can add the running part to C_NS_GUEST */
  C_GUEST_SEQ,     /* odd while an exit moves C_ENTERED_AT into C_NS_GUEST (a seqlock) */
  C_COUNT_FIXED,
};

struct shim_emt {
  _Atomic uint32_t state;        /* 0: enum shim_state */
  _Atomic uint32_t wake_token;   /* 4: futex word; 1 = a wake is pending */
  _Atomic uint32_t poke_request; /* 8: set by shim_poke, consumed by shim_run */
  _Atomic int32_t tid;           /* 12: the EMT's thread id */
  int32_t vcpu_fd;               /* 16 */
  int32_t cpu;                   /* 20: the host CPU shim_wake_on pinned it to (-1: none) */
  struct kvm_run *run;           /* 24 */
  struct shim_global *global;    /* 32 */
  int64_t armed_deadline;        /* 40: deadline the thread timer is armed for (0: none) */
  timer_t timer;                 /* 48 */
  _Atomic int32_t arm_lock;      /* 56: serialises arming (the EMT, shim_extend): PI futex */
  int32_t pad1;                  /* 60 */
  _Atomic uint64_t counters[C_COUNT_FIXED]; /* 64 */
  _Atomic uint64_t exits[SHIM_EXIT_REASONS]; /* 64 + 8 * C_COUNT_FIXED */
};

/* Shared by every EMT of one VMM: how many are in guest mode now, and the most ever. */
struct shim_global {
  _Atomic int32_t in_guest;   /* 0 */
  _Atomic int32_t high_water; /* 4 */
};

_Static_assert(offsetof(struct shim_emt, counters) == 64, "counters at 64");
_Static_assert(sizeof(struct shim_emt) <= 512, "shim_emt fits 512 bytes");

static __thread struct shim_emt *current_emt;
static int shim_signal;

/*
 * arm_lock: a priority-inheritance futex (futex(2), FUTEX_LOCK_PI / FUTEX_UNLOCK_PI). The word
 * is 0 when free, else the owner's tid (with FUTEX_WAITERS set by the kernel while someone
 * waits).
 *
 * Its two users run at different priorities: the EMT arms its own timer (fair class, or
 * SCHED_FIFO 1 on reserved time), and the scheduler core moves it in shim_extend (SCHED_FIFO 4,
 * pinned to slot 0's CPU). When the core preempts an EMT that holds the lock on the core's
 * CPU, a spinning or sched_yield()ing core never lets the holder run again (sched_yield only
 * yields to equal priorities; RT throttling stalls the holder with the core): a livelock
 * (DESIGN.md invariant 7). With PI the core blocks in the kernel, which lends the holder the
 * core's priority until it unlocks; the section it holds is one timer_settime().
 */
static __thread int32_t self_tid_cache;

static int32_t self_tid(void) {
  if (!self_tid_cache) self_tid_cache = (int32_t)syscall(SYS_gettid);
  return self_tid_cache;
}

static void lock_arm(struct shim_emt *e) {
  int32_t free = 0;
  if (atomic_compare_exchange_strong(&e->arm_lock, &free, self_tid())) return;
  /* Contended: the kernel queues us by priority and boosts the owner. EAGAIN (the owner is
   * exiting) and EINTR are retried; the kernel returns 0 once the lock is ours. */
  while (syscall(SYS_futex, (int32_t *)&e->arm_lock, FUTEX_LOCK_PI | FUTEX_PRIVATE_FLAG, 0,
                 NULL, NULL, 0) != 0) {
    if (errno != EAGAIN && errno != EINTR) break; /* cannot happen with a valid word */
  }
}

static void unlock_arm(struct shim_emt *e) {
  int32_t mine = self_tid();
  if (atomic_compare_exchange_strong(&e->arm_lock, &mine, 0)) return;
  /* FUTEX_WAITERS is set: the kernel hands the lock to the highest-priority waiter. */
  syscall(SYS_futex, (int32_t *)&e->arm_lock, FUTEX_UNLOCK_PI | FUTEX_PRIVATE_FLAG, 0, NULL,
          NULL, 0);
}

/*
 * For the priority-inversion regression test only: holds arm_lock while the calling thread
 * uses `cpu_ns` of CPU time (a section that runs long when its thread is preempted), then
 * releases it. Returns the thread CPU time the hold took, in ns.
 */
double shim_hold_arm_lock(struct shim_emt *e, double cpu_ns) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  double start = (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec, now = start;
  lock_arm(e);
  while (now - start < cpu_ns) {
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    now = (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
  }
  unlock_arm(e);
  return now - start;
}

static void on_poke_signal(int sig) {
  (void)sig;
  struct shim_emt *e = current_emt;
  /* Only in guest mode: a signal between the deadline check and the ioctl must still stop
   * the coming KVM_RUN, which immediate_exit does (KVM checks it on entry). */
  if (e && e->run && atomic_load(&e->state) == EMT_GUEST) e->run->immediate_exit = 1;
}

int64_t shim_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The same clock as a double (exact to 2^53 ns, about 104 days of uptime), cheaper to
 * return to JavaScript than a BigInt. */
double shim_now_f64(void) { return (double)shim_now(); }

/* CPU time the calling thread has used (CLOCK_THREAD_CPUTIME_ID), in ns: guest mode included,
 * time other threads held its CPU excluded. */
double shim_thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* The same clock of the EMT's thread, read from another thread of the process (the per-thread
 * CPU clock id of its tid, MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED) in the kernel's
 * posix-timers.h). Returns -1 when the EMT has no thread. */
double shim_emt_cpu_ns(struct shim_emt *e) {
  int32_t tid = atomic_load(&e->tid);
  if (tid <= 0) return -1;
  clockid_t clock = (clockid_t)(((unsigned int)~tid << 3) | 6);
  struct timespec ts;
  if (clock_gettime(clock, &ts) != 0) return -1;
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Installs the poke handler once for the process; returns the signal number or -errno. */
int32_t shim_init(void) {
  if (shim_signal) return shim_signal;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_poke_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: KVM_RUN must return EINTR */
  int sig = SIGRTMIN + SHIM_SIGNAL_OFFSET;
  if (sigaction(sig, &sa, NULL) != 0) return -errno;
  shim_signal = sig;
  return sig;
}

/* Size and the offsets the TypeScript mirror needs, for the layout test. */
int32_t shim_layout(int32_t what) {
  switch (what) {
    case 0: return (int32_t)sizeof(struct shim_emt);
    case 1: return (int32_t)offsetof(struct shim_emt, state);
    case 2: return (int32_t)offsetof(struct shim_emt, wake_token);
    case 3: return (int32_t)offsetof(struct shim_emt, poke_request);
    case 4: return (int32_t)offsetof(struct shim_emt, tid);
    case 5: return (int32_t)offsetof(struct shim_emt, counters);
    case 6: return (int32_t)offsetof(struct shim_emt, exits);
    case 7: return C_COUNT_FIXED;
    case 8: return SHIM_EXIT_REASONS;
    case 9: return (int32_t)sizeof(struct shim_global);
    default: return -1;
  }
}

/*
 * Binds the calling thread to an EMT block: records its tid, unblocks the poke signal and
 * creates its run-deadline timer. vcpu_fd/run may be -1/NULL for a block that only halts
 * (tests, the scheduler's own waits).
 */
int32_t shim_attach(struct shim_emt *e, struct shim_global *g, int32_t vcpu_fd, void *run) {
  if (shim_init() < 0) return -errno;
  e->vcpu_fd = vcpu_fd;
  e->run = (struct kvm_run *)run;
  e->global = g;
  e->armed_deadline = 0;
  e->cpu = -1;
  atomic_store(&e->arm_lock, 0);
  atomic_store(&e->state, EMT_HOST);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, shim_signal);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  struct sigevent sev;
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = shim_signal;
  sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
  if (timer_create(CLOCK_MONOTONIC, &sev, &e->timer) != 0) return -errno;
  atomic_store(&e->tid, (int32_t)sev._sigev_un._tid);
  current_emt = e;
  return 0;
}

/* Releases what shim_attach created. Call on the same thread. */
int32_t shim_detach(struct shim_emt *e) {
  lock_arm(e); /* shim_extend may be arming the timer from the core's thread */
  if (atomic_load(&e->tid) != 0) timer_delete(e->timer);
  atomic_store(&e->tid, 0);
  unlock_arm(e);
  if (current_emt == e) current_emt = NULL;
  return 0;
}

/* Call with arm_lock held. */
static void set_timer(struct shim_emt *e, int64_t deadline) {
  struct itimerspec its;
  memset(&its, 0, sizeof its);
  if (deadline > 0) {
    its.it_value.tv_sec = deadline / 1000000000LL;
    its.it_value.tv_nsec = deadline % 1000000000LL;
  }
  timer_settime(e->timer, TIMER_ABSTIME, &its, NULL);
  e->armed_deadline = deadline;
}

static void arm_timer(struct shim_emt *e, int64_t deadline) {
  lock_arm(e);
  set_timer(e, deadline);
  unlock_arm(e);
}

/*
 * Moves a running EMT's run deadline from `old_ns` to `new_ns` without taking it out of guest
 * mode: the scheduler renewed its slice. Called from another thread (the scheduler core).
 * Only a timer armed for exactly `old_ns` is moved; one armed for an earlier deadline (the
 * LAPIC timer) or already re-armed by the EMT is left alone, and the EMT picks the new slice
 * deadline up from its grant at its next entry. Returns 1 when it moved the timer, else 0.
 */
int32_t shim_extend(struct shim_emt *e, double old_ns, double new_ns) {
  int32_t moved = 0;
  lock_arm(e);
  if (e->armed_deadline == (int64_t)old_ns && atomic_load(&e->tid) > 0) {
    set_timer(e, (int64_t)new_ns);
    moved = 1;
  }
  unlock_arm(e);
  return moved;
}

static void note_in_guest(struct shim_global *g) {
  if (!g) return;
  int32_t n = atomic_fetch_add(&g->in_guest, 1) + 1;
  int32_t hw = atomic_load(&g->high_water);
  while (n > hw && !atomic_compare_exchange_weak(&g->high_water, &hw, n)) {}
}

/*
 * One KVM_RUN. Returns the KVM exit reason, SHIM_RUN_POKED, SHIM_RUN_DEADLINE, or -errno.
 * deadline_ns: absolute CLOCK_MONOTONIC ns (0: none); a double, because JavaScript numbers
 * cross FFI without a BigInt and are exact to 2^53 ns.
 */
int32_t shim_run(struct shim_emt *e, double deadline_ns) {
  int64_t deadline = (int64_t)deadline_ns;
  /* Publish guest mode first, then look for a poke: with shim_poke's store-then-load order
   * one of the two always sees the other (both seq_cst). */
  atomic_store(&e->state, EMT_GUEST);
  if (atomic_exchange(&e->poke_request, 0)) {
    atomic_store(&e->state, EMT_HOST);
    return SHIM_RUN_POKED;
  }
  int64_t start = shim_now();
  if (deadline > 0 && start >= deadline) {
    atomic_store(&e->state, EMT_HOST);
    atomic_fetch_add(&e->counters[C_DEADLINES], 1);
    return SHIM_RUN_DEADLINE;
  }
  if (deadline != e->armed_deadline) arm_timer(e, deadline);
  note_in_guest(e->global);
  atomic_store(&e->counters[C_ENTERED_AT], (uint64_t)start);
  int r = ioctl(e->vcpu_fd, KVM_RUN, 0);
  int err = errno;
  if (e->global) atomic_fetch_sub(&e->global->in_guest, 1);
  atomic_store(&e->state, EMT_HOST);
  int64_t end = shim_now();
  e->run->immediate_exit = 0;
  atomic_fetch_add(&e->counters[C_RUNS], 1);
  atomic_fetch_add(&e->counters[C_GUEST_SEQ], 1);
  atomic_store(&e->counters[C_ENTERED_AT], 0);
  atomic_fetch_add(&e->counters[C_NS_GUEST], (uint64_t)(end - start));
  atomic_fetch_add(&e->counters[C_GUEST_SEQ], 1);
  if (r < 0) {
    if (err != EINTR) return -err;
    atomic_fetch_add(&e->counters[C_INTR], 1);
    atomic_fetch_add(&e->exits[KVM_EXIT_INTR], 1);
    if (atomic_exchange(&e->poke_request, 0)) return SHIM_RUN_POKED;
    if (deadline > 0 && end >= deadline) {
      atomic_fetch_add(&e->counters[C_DEADLINES], 1);
      return SHIM_RUN_DEADLINE;
    }
    return KVM_EXIT_INTR;
  }
  uint32_t reason = e->run->exit_reason;
  if (reason < SHIM_EXIT_REASONS) atomic_fetch_add(&e->exits[reason], 1);
  return (int32_t)reason;
}

static long futex_wait_abs(_Atomic uint32_t *word, uint32_t expected, int64_t deadline) {
  struct timespec ts, *tsp = NULL;
  if (deadline > 0) {
    ts.tv_sec = deadline / 1000000000LL;
    ts.tv_nsec = deadline % 1000000000LL;
    tsp = &ts;
  }
  /* FUTEX_WAIT_BITSET: absolute timeout, CLOCK_MONOTONIC unless FUTEX_CLOCK_REALTIME. */
  return syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected,
                 tsp, NULL, FUTEX_BITSET_MATCH_ANY);
}

/*
 * Blocks the calling EMT until shim_wake() or the absolute CLOCK_MONOTONIC deadline
 * (0: none). kind 0 = a guest HLT, 1 = waiting for a grant (counted apart). spin_ns > 0
 * polls the wake token that long first. Returns SHIM_HALT_WOKEN or SHIM_HALT_TIMEOUT.
 * The wake token is consumed: the caller re-checks its own pending work after return.
 */
int32_t shim_halt(struct shim_emt *e, double deadline_ns, int32_t kind, double spin_ns_f) {
  int64_t deadline = (int64_t)deadline_ns, spin_ns = (int64_t)spin_ns_f;
  int64_t start = shim_now();
  int32_t result = SHIM_HALT_TIMEOUT;
  atomic_fetch_add(&e->counters[kind ? C_GRANT_WAITS : C_HALTS], 1);
  if (spin_ns > 0) {
    int64_t until = start + spin_ns;
    if (deadline > 0 && deadline < until) until = deadline;
    while (shim_now() < until) {
      if (atomic_exchange(&e->wake_token, 0)) {
        result = SHIM_HALT_WOKEN;
        goto out;
      }
      __builtin_ia32_pause();
    }
  }
  /* Publish HALTED, then re-check: a wake that set the token before this point is seen
   * here; one after it finds the token set and the futex wake lands on our wait (the
   * kernel compares the word under its lock). */
  uint32_t expected = EMT_HOST;
  atomic_compare_exchange_strong(&e->state, &expected, EMT_HALTED);
  for (;;) {
    if (atomic_exchange(&e->wake_token, 0)) {
      result = SHIM_HALT_WOKEN;
      break;
    }
    if (deadline > 0 && shim_now() >= deadline) break;
    long r = futex_wait_abs(&e->wake_token, 0, deadline);
    if (r < 0 && errno == ETIMEDOUT) {
      if (atomic_exchange(&e->wake_token, 0)) result = SHIM_HALT_WOKEN;
      break;
    }
  }
  atomic_store(&e->state, EMT_HOST);
out:;
  int64_t ns = shim_now() - start;
  atomic_fetch_add(&e->counters[kind ? C_NS_WAIT_GRANT : C_NS_HALTED], (uint64_t)ns);
  return result;
}

/* Always signals: sets the token and wakes the futex, halted-looking or not. */
int32_t shim_wake(struct shim_emt *e) {
  atomic_fetch_add(&e->counters[C_WAKES], 1);
  atomic_store(&e->wake_token, 1);
  return (int32_t)syscall(SYS_futex, (uint32_t *)&e->wake_token,
                          FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, NULL, NULL, 0);
}

/*
 * Wakes the EMT for a grant on host CPU `cpu` (-1: wherever it is). An EMT pinned elsewhere
 * is moved first (sched_setaffinity on its thread), so that the wake-up already lands on the
 * slot's CPU: woken on its old CPU it waited there behind that CPU's real-time threads while
 * the slot's CPU idled, before it could move itself. Returns shim_wake's result, or -errno.
 */
int32_t shim_wake_on(struct shim_emt *e, int32_t cpu) {
  int32_t tid = atomic_load(&e->tid);
  if (cpu >= 0 && cpu != e->cpu && tid > 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(tid, sizeof set, &set) != 0) return -errno;
    e->cpu = cpu;
  }
  return shim_wake(e);
}

/*
 * Forces the EMT out of KVM_RUN. The request is always recorded (shim_run consumes it
 * before entering); the signal is sent only when the EMT is in guest mode. Returns 1 when
 * it signalled, 0 when it only recorded.
 */
int32_t shim_poke(struct shim_emt *e) {
  atomic_store(&e->poke_request, 1);
  if (atomic_load(&e->state) != EMT_GUEST) return 0;
  if (e->run) e->run->immediate_exit = 1;
  int32_t tid = atomic_load(&e->tid);
  if (tid <= 0) return 0;
  atomic_fetch_add(&e->counters[C_POKES], 1);
  syscall(SYS_tgkill, getpid(), tid, shim_signal);
  return 1;
}
