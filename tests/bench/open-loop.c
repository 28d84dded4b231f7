/*
 * open-loop: a paced (open-loop) HTTP/1.1 keep-alive load generator for the Trellis benchmark.
 *
 * Why not wrk: wrk is closed-loop. A slow response delays the next request on that connection, so
 * the requests that would have waited are never sent and never measured (coordinated omission), and
 * its latency at a "rate" is the latency of whatever rate the server allowed. Here:
 *
 *  1. Request i is due at t0 + i / rate, whatever happened before (the schedule never slips).
 *  2. When it is due, it is written on an idle keep-alive connection (most recently freed first, as a
 *     client pool does). If every connection is busy it waits in a FIFO backlog and goes out on the
 *     first connection that frees up.
 *  3. Its latency is measured from its DUE time to the last byte of the response, so time spent in
 *     the backlog because the server was slow counts against the server (as wrk2 does).
 *  4. Requests due in the first `warmup` seconds are sent but not recorded.
 *
 * Responses must carry Content-Length (every server in the benchmark sends it); a response without
 * one, a non-2xx status, or a connection that fails counts as an error and is reported.
 *
 * Usage: open-loop HOST PORT HOSTHEADER RATE DURATION_S CONNECTIONS [WARMUP_S]
 * Prints one JSON object on stdout. Exit 0 when the run completed (errors are in the JSON), 2 on
 * bad usage, 1 when no connection could be made.
 *
 * Loopback only: HOST must be a numeric IPv4 address in 127.0.0.0/8 (the benchmark never targets
 * anything else), checked before any connection is made.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define BUF_SIZE 16384

struct conn {
  int fd;
  int busy;            /* a request is outstanding */
  int64_t due_ns;      /* scheduled time of the outstanding request */
  int record;          /* outside the warm-up: record its latency */
  char buf[BUF_SIZE];  /* response bytes not yet consumed */
  size_t len;
  size_t sent;         /* bytes of the request written so far */
};

static struct conn conns[MAX_CONNS];
static int free_stack[MAX_CONNS];
static int free_top = 0;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static char request[512];
static size_t request_len;
static struct sockaddr_in addr;
static int epfd;

/* Latencies in ns of recorded requests. */
static int64_t *lat;
static size_t lat_n = 0, lat_cap = 0;
static uint64_t errors = 0, non2xx = 0, reconnects = 0, completed = 0;

/* Backlog: due times of requests that found no idle connection (ring buffer). */
static int64_t *backlog;
static int *backlog_rec;
static size_t bl_cap, bl_head = 0, bl_len = 0;
static size_t max_backlog = 0;

static void die(const char *msg) {
  fprintf(stderr, "open-loop: %s: %s\n", msg, strerror(errno));
  exit(1);
}

static int open_conn(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  /* A blocking-style connect on loopback completes at once or fails at once (EINPROGRESS is possible
   * too; the first write then waits for EPOLLOUT like any other partial write). */
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  return fd;
}

static void watch(int i, uint32_t events, int op) {
  struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)i};
  if (epoll_ctl(epfd, op, conns[i].fd, &ev) < 0) die("epoll_ctl");
}

static void record_latency(int64_t ns) {
  if (lat_n == lat_cap) {
    lat_cap = lat_cap ? lat_cap * 2 : 1 << 16;
    lat = realloc(lat, lat_cap * sizeof *lat);
    if (!lat) die("realloc");
  }
  lat[lat_n++] = ns;
}

static void try_write(int i) {
  struct conn *c = &conns[i];
  while (c->sent < request_len) {
    ssize_t w = write(c->fd, request + c->sent, request_len - c->sent);
    if (w < 0) {
      if (errno == EAGAIN) {
        watch(i, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
        return;
      }
      return; /* the read side will see the failure */
    }
    c->sent += (size_t)w;
  }
  watch(i, EPOLLIN, EPOLL_CTL_MOD);
}

static void send_on(int i, int64_t due, int rec) {
  struct conn *c = &conns[i];
  c->busy = 1;
  c->due_ns = due;
  c->record = rec;
  c->sent = 0;
  try_write(i);
}

static void release(int i) {
  conns[i].busy = 0;
  if (bl_len > 0) {
    int64_t due = backlog[bl_head];
    int rec = backlog_rec[bl_head];
    bl_head = (bl_head + 1) % bl_cap;
    bl_len--;
    send_on(i, due, rec);
  } else {
    free_stack[free_top++] = i;
  }
}

/* Replaces a failed connection; its outstanding request is an error. */
static void reset_conn(int i) {
  struct conn *c = &conns[i];
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  if (c->busy) errors++;
  c->len = 0;
  c->fd = open_conn();
  reconnects++;
  if (c->fd < 0) {
    fprintf(stderr, "open-loop: reconnect failed\n");
    exit(1);
  }
  watch(i, EPOLLIN, EPOLL_CTL_ADD);
  release(i);
}

/* Consumes complete responses from conns[i].buf; returns -1 on a protocol error. */
static int parse(int i) {
  struct conn *c = &conns[i];
  for (;;) {
    if (c->len == 0) return 0;
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end) return c->len >= BUF_SIZE ? -1 : 0;
    size_t head = (size_t)(end - c->buf) + 4;
    if (c->len < 12 || memcmp(c->buf, "HTTP/1.", 7) != 0) return -1;
    int status = atoi(c->buf + 9);
    long clen = -1;
    for (char *p = c->buf; p < end;) {
      char *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
      if (!eol) break;
      if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0) clen = atol(p + 15);
      p = eol + 2;
    }
    if (clen < 0) return -1;
    if (c->len < head + (size_t)clen) return 0;
    if (!c->busy) return -1; /* a response nobody asked for */
    int64_t t = now_ns();
    completed++;
    if (status < 200 || status > 299) non2xx++;
    if (c->record) record_latency(t - c->due_ns);
    size_t used = head + (size_t)clen;
    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;
    release(i);
  }
}

static int cmp64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static double pct_us(double p) {
  if (lat_n == 0) return 0;
  size_t k = (size_t)(p / 100.0 * (double)(lat_n - 1) + 0.5);
  return (double)lat[k] / 1000.0;
}

int main(int argc, char **argv) {
  if (argc < 7) {
    fprintf(stderr, "usage: open-loop HOST PORT HOSTHEADER RATE DURATION_S CONNECTIONS [WARMUP_S]\n");
    return 2;
  }
  const char *host = argv[1];
  int port = atoi(argv[2]);
  const char *host_header = argv[3];
  double rate = atof(argv[4]);
  double duration = atof(argv[5]);
  int nconns = atoi(argv[6]);
  double warmup = argc > 7 ? atof(argv[7]) : 0;
  if (port <= 0 || port > 65535 || rate <= 0 || duration <= 0 || nconns <= 0 || nconns > MAX_CONNS ||
      warmup < 0 || warmup >= duration) {
    fprintf(stderr, "open-loop: bad arguments\n");
    return 2;
  }
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1 || (ntohl(addr.sin_addr.s_addr) >> 24) != 127) {
    fprintf(stderr, "open-loop: HOST must be a numeric loopback address (127.0.0.0/8)\n");
    return 2;
  }
  request_len = (size_t)snprintf(request, sizeof request, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host_header);
  if (request_len >= sizeof request) return 2;

  signal(SIGPIPE, SIG_IGN); /* a write to a connection the server closed is an error, not a death */
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) die("epoll_create1");
  for (int i = 0; i < nconns; i++) {
    conns[i].fd = open_conn();
    if (conns[i].fd < 0) die("connect");
    watch(i, EPOLLIN, EPOLL_CTL_ADD);
  }
  for (int i = nconns - 1; i >= 0; i--) free_stack[free_top++] = i;
  bl_cap = (size_t)(rate * duration) + 16;
  backlog = malloc(bl_cap * sizeof *backlog);
  backlog_rec = malloc(bl_cap * sizeof *backlog_rec);
  if (!backlog || !backlog_rec) die("malloc");

  const int64_t interval = (int64_t)(1e9 / rate);
  const int64_t t0 = now_ns();
  const int64_t t_warm = t0 + (int64_t)(warmup * 1e9);
  const int64_t t_end = t0 + (int64_t)(duration * 1e9);
  /* After the last request is due, outstanding ones get this long to finish; what is left is an error. */
  const int64_t t_drain = t_end + 2000000000LL;
  uint64_t scheduled = 0;
  struct epoll_event evs[64];

  for (;;) {
    int64_t t = now_ns();
    /* 1.-2. Send (or queue) every request that is due. */
    while (t0 + (int64_t)scheduled * interval <= t && t0 + (int64_t)scheduled * interval < t_end) {
      int64_t due = t0 + (int64_t)scheduled * interval;
      int rec = due >= t_warm;
      scheduled++;
      if (free_top > 0) {
        send_on(free_stack[--free_top], due, rec);
      } else {
        size_t tail = (bl_head + bl_len) % bl_cap;
        backlog[tail] = due;
        backlog_rec[tail] = rec;
        bl_len++;
        if (bl_len > max_backlog) max_backlog = bl_len;
      }
    }
    int64_t next_due = t0 + (int64_t)scheduled * interval;
    int sending = next_due < t_end;
    if (!sending && free_top == nconns && bl_len == 0) break;
    if (!sending && t >= t_drain) break;
    int64_t wake = sending ? next_due : t_drain;
    int64_t wait = wake - now_ns();
    if (wait < 0) wait = 0;
    struct timespec ts = {.tv_sec = wait / 1000000000LL, .tv_nsec = wait % 1000000000LL};
    int n = epoll_pwait2(epfd, evs, 64, &ts, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_pwait2");
    }
    for (int k = 0; k < n; k++) {
      int i = (int)evs[k].data.u32;
      struct conn *c = &conns[i];
      if (evs[k].events & EPOLLOUT) try_write(i);
      if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        for (;;) {
          ssize_t r = read(c->fd, c->buf + c->len, BUF_SIZE - c->len);
          if (r > 0) {
            c->len += (size_t)r;
            if (parse(i) < 0) {
              reset_conn(i);
              break;
            }
            continue;
          }
          if (r < 0 && errno == EAGAIN) break;
          reset_conn(i); /* closed by the server, or failed */
          break;
        }
      }
    }
  }
  int64_t elapsed = now_ns() - t0;
  uint64_t unfinished = bl_len;
  for (int i = 0; i < nconns; i++) unfinished += conns[i].busy ? 1 : 0;
  qsort(lat, lat_n, sizeof *lat, cmp64);
  printf(
      "{\"rate\":%.1f,\"durationS\":%.3f,\"warmupS\":%.3f,\"connections\":%d,\"scheduled\":%llu,"
      "\"completed\":%llu,\"recorded\":%zu,\"errors\":%llu,\"non2xx\":%llu,\"unfinished\":%llu,"
      "\"reconnects\":%llu,\"maxBacklog\":%zu,\"elapsedS\":%.3f,"
      "\"latencyUs\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f}}\n",
      rate, duration, warmup, nconns, (unsigned long long)scheduled, (unsigned long long)completed, lat_n,
      (unsigned long long)(errors + unfinished), (unsigned long long)non2xx, (unsigned long long)unfinished,
      (unsigned long long)reconnects, max_backlog, (double)elapsed / 1e9, pct_us(50), pct_us(90), pct_us(99),
      pct_us(99.9), lat_n ? (double)lat[lat_n - 1] / 1000.0 : 0.0);
  for (int i = 0; i < nconns; i++) close(conns[i].fd);
  return 0;
}
