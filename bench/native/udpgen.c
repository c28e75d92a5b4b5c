/*
 * udpgen: a UDP traffic source and sink for xtr's forwarding benchmark.
 *
 * Why our own tool: iperf3 and socat send one datagram per syscall and top out
 * well below what a router under test must be driven with; sendmmsg/recvmmsg
 * move a whole batch per syscall, so the generator is never the bottleneck
 * being measured.
 *
 *   udpgen send --dst ADDR --port P [--src ADDR] [--sport P] --size BYTES
 *               --duration SECONDS [--batch 64] [--rate PPS] [--count N]
 *       prints on exit: sent=N pps=X
 *       pps = sent / wall time from the first send to the end of the run.
 *
 *   udpgen recv --port P [--bind ADDR] --duration SECONDS [--idle SECONDS]
 *       prints on exit: received=N pps=X bytes=B
 *       pps = datagrams received after the first recvmmsg batch / time from
 *       that first batch to the last one: the rate the traffic actually
 *       arrived at, independent of how long the sink waited before and
 *       after; 0 when everything came in one batch. bytes counts UDP payload.
 *       --idle ends the run once traffic has stopped for that long.
 *
 * ADDR may be IPv4 or IPv6. Without --bind, recv listens on [::] dual-stack.
 * Every payload starts with a 64-bit big-endian sequence number when
 * --size >= 8. Both modes end by themselves after --duration, on SIGINT or
 * SIGTERM (still printing their line), and exit 2 on bad arguments.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCH 1024
#define MAX_PAYLOAD 65507

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void) {
  fprintf(stderr,
          "usage:\n"
          "  udpgen send --dst ADDR --port P [--src ADDR] [--sport P] --size BYTES --duration SECONDS\n"
          "              [--batch 64] [--rate PPS] [--count N]\n"
          "  udpgen recv --port P [--bind ADDR] --duration SECONDS [--idle SECONDS]\n");
  exit(2);
}

static void die_arg(const char *opt, const char *value, const char *why) {
  fprintf(stderr, "udpgen: %s %s: %s\n", opt, value ? value : "(missing)", why);
  exit(2);
}

static double parse_num(const char *opt, const char *value, double min, double max) {
  if (!value) die_arg(opt, value, "needs a value");
  char *end = NULL;
  errno = 0;
  double v = strtod(value, &end);
  if (errno || end == value || *end) die_arg(opt, value, "not a number");
  if (v < min || v > max) {
    char why[96];
    snprintf(why, sizeof why, "must be between %g and %g", min, max);
    die_arg(opt, value, why);
  }
  return v;
}

/* Fills a sockaddr from "ADDR" and a port; returns its length, 0 if ADDR is not an IP address. */
static socklen_t make_addr(const char *addr, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    return sizeof *a4;
  }
  if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    return sizeof *a6;
  }
  return 0;
}

static void install_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: blocking calls return EINTR */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

static void set_timeout(int fd, int opt, double seconds) {
  struct timeval tv = {.tv_sec = (time_t)seconds, .tv_usec = (suseconds_t)((seconds - (time_t)seconds) * 1e6)};
  setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv);
}

static int run_send(int argc, char **argv) {
  const char *dst = NULL, *src = NULL;
  int port = -1, sport = 0, batch = 64;
  long size = -1;
  double duration = -1, rate = 0, count = 0;
  for (int i = 0; i < argc; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(o, "--dst")) dst = v, i++;
    else if (!strcmp(o, "--src")) src = v, i++;
    else if (!strcmp(o, "--port")) port = (int)parse_num(o, v, 1, 65535), i++;
    else if (!strcmp(o, "--sport")) sport = (int)parse_num(o, v, 0, 65535), i++;
    else if (!strcmp(o, "--size")) size = (long)parse_num(o, v, 0, MAX_PAYLOAD), i++;
    else if (!strcmp(o, "--duration")) duration = parse_num(o, v, 0.001, 86400), i++;
    else if (!strcmp(o, "--batch")) batch = (int)parse_num(o, v, 1, MAX_BATCH), i++;
    else if (!strcmp(o, "--rate")) rate = parse_num(o, v, 0, 1e9), i++;
    else if (!strcmp(o, "--count")) count = parse_num(o, v, 0, 1e15), i++;
    else die_arg(o, NULL, "unknown option for send");
  }
  if (!dst || port < 0 || size < 0 || duration < 0) usage();

  struct sockaddr_storage dst_addr, src_addr;
  socklen_t dst_len = make_addr(dst, port, &dst_addr);
  if (!dst_len) die_arg("--dst", dst, "not an IPv4 or IPv6 address");
  int fd = socket(dst_addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    perror("udpgen: socket");
    return 1;
  }
  if (src || sport) {
    socklen_t src_len = make_addr(src ? src : (dst_addr.ss_family == AF_INET ? "0.0.0.0" : "::"), sport, &src_addr);
    if (!src_len || src_addr.ss_family != dst_addr.ss_family)
      die_arg("--src", src, "not an address of the same family as --dst");
    if (bind(fd, (struct sockaddr *)&src_addr, src_len) < 0) {
      fprintf(stderr, "udpgen: bind %s: %s\n", src ? src : "(any)", strerror(errno));
      return 1;
    }
  }
  if (connect(fd, (struct sockaddr *)&dst_addr, dst_len) < 0) {
    fprintf(stderr, "udpgen: connect %s port %d: %s\n", dst, port, strerror(errno));
    return 1;
  }
  int sndbuf = 4 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) < 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  /* a full queue must not block past the deadline */
  set_timeout(fd, SO_SNDTIMEO, 0.1);

  static unsigned char payloads[MAX_BATCH][64];
  unsigned char *big = NULL;
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  /* each message has its own copy of the first 8 bytes (the sequence number);
     the rest of the payload is shared and constant */
  if (size > 8) {
    big = calloc(1, (size_t)size);
    if (!big) {
      perror("udpgen: calloc");
      return 1;
    }
    for (long j = 8; j < size; j++) big[j] = (unsigned char)j;
  }
  struct iovec iov2[MAX_BATCH][2];
  memset(msgs, 0, sizeof msgs);
  for (int j = 0; j < batch; j++) {
    if (size <= 8) {
      iov[j].iov_base = payloads[j];
      iov[j].iov_len = (size_t)size;
      msgs[j].msg_hdr.msg_iov = &iov[j];
      msgs[j].msg_hdr.msg_iovlen = 1;
    } else {
      iov2[j][0].iov_base = payloads[j];
      iov2[j][0].iov_len = 8;
      iov2[j][1].iov_base = big + 8;
      iov2[j][1].iov_len = (size_t)size - 8;
      msgs[j].msg_hdr.msg_iov = iov2[j];
      msgs[j].msg_hdr.msg_iovlen = 2;
    }
  }

  install_signals();
  uint64_t sent = 0, seq = 0;
  double start = now_s(), deadline = start + duration, t = start;
  unsigned long errors = 0;
  while (!stop_requested && t < deadline && (count == 0 || sent < (uint64_t)count)) {
    int want = batch;
    if (count > 0 && (uint64_t)count - sent < (uint64_t)want) want = (int)((uint64_t)count - sent);
    if (rate > 0) {
      double allowed = rate * (t - start) - (double)sent;
      if (allowed < 1) {
        /* sleep until the next datagram is due, but at most 1 ms so the deadline holds */
        double wait = (1 - allowed) / rate;
        if (wait > 0.001) wait = 0.001;
        struct timespec ts = {0, (long)(wait * 1e9)};
        nanosleep(&ts, NULL);
        t = now_s();
        continue;
      }
      if (allowed < want) want = (int)allowed;
    }
    for (int j = 0; j < want; j++) {
      uint64_t s = seq + (uint64_t)j;
      for (int b = 7; b >= 0; b--) payloads[j][7 - b] = (unsigned char)(s >> (b * 8));
    }
    int r = sendmmsg(fd, msgs, (unsigned)want, 0);
    if (r < 0) {
      /* ECONNREFUSED/EHOSTUNREACH: an ICMP error came back for an earlier
         datagram; ENOBUFS/EAGAIN: a queue was full; ENETUNREACH/ENETDOWN: the
         route or link under test is (re)starting. None ends a load test. */
      if (errno != EINTR && errno != ECONNREFUSED && errno != ENOBUFS && errno != EAGAIN && errno != EWOULDBLOCK &&
          errno != EHOSTUNREACH && errno != ENETUNREACH && errno != ENETDOWN) {
        fprintf(stderr, "udpgen: sendmmsg: %s\n", strerror(errno));
        break;
      }
      errors++;
    } else {
      sent += (uint64_t)r;
      seq += (uint64_t)r;
    }
    t = now_s();
  }
  double elapsed = now_s() - start;
  close(fd);
  free(big);
  printf("sent=%llu pps=%.0f\n", (unsigned long long)sent, elapsed > 0 ? (double)sent / elapsed : 0.0);
  fflush(stdout);
  return 0;
}

static int run_recv(int argc, char **argv) {
  const char *bind_to = NULL;
  int port = -1;
  double duration = -1, idle = 0;
  for (int i = 0; i < argc; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(o, "--bind")) bind_to = v, i++;
    else if (!strcmp(o, "--port")) port = (int)parse_num(o, v, 1, 65535), i++;
    else if (!strcmp(o, "--duration")) duration = parse_num(o, v, 0.001, 86400), i++;
    else if (!strcmp(o, "--idle")) idle = parse_num(o, v, 0, 86400), i++;
    else die_arg(o, NULL, "unknown option for recv");
  }
  if (port < 0 || duration < 0) usage();

  struct sockaddr_storage addr;
  socklen_t len = make_addr(bind_to ? bind_to : "::", port, &addr);
  if (!len) die_arg("--bind", bind_to, "not an IPv4 or IPv6 address");
  int fd = socket(addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    perror("udpgen: socket");
    return 1;
  }
  if (addr.ss_family == AF_INET6 && !bind_to) {
    int off = 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  /* a deep receive queue so bursts are counted, not dropped, by the sink */
  int rcvbuf = 64 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (bind(fd, (struct sockaddr *)&addr, len) < 0) {
    fprintf(stderr, "udpgen: bind %s port %d: %s\n", bind_to ? bind_to : "::", port, strerror(errno));
    return 1;
  }
  /* wake up regularly to check the deadline even when nothing arrives */
  set_timeout(fd, SO_RCVTIMEO, 0.05);

  enum { RECV_BATCH = 256, SLOT = 2048 };
  static unsigned char bufs[RECV_BATCH][SLOT];
  static struct mmsghdr msgs[RECV_BATCH];
  static struct iovec iov[RECV_BATCH];
  for (int j = 0; j < RECV_BATCH; j++) {
    iov[j].iov_base = bufs[j];
    iov[j].iov_len = SLOT; /* larger datagrams are counted by their real length via MSG_TRUNC */
    msgs[j].msg_hdr.msg_iov = &iov[j];
    msgs[j].msg_hdr.msg_iovlen = 1;
  }

  install_signals();
  uint64_t received = 0, bytes = 0, first_batch = 0;
  double start = now_s(), deadline = start + duration, first = 0, last = 0, t = start;
  while (!stop_requested && t < deadline) {
    int r = recvmmsg(fd, msgs, RECV_BATCH, MSG_WAITFORONE | MSG_TRUNC, NULL);
    t = now_s();
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        if (idle > 0 && received > 0 && t - last >= idle) break;
        continue;
      }
      fprintf(stderr, "udpgen: recvmmsg: %s\n", strerror(errno));
      break;
    }
    if (r > 0) {
      if (received == 0) {
        first = t;
        first_batch = (uint64_t)r;
      }
      last = t;
      received += (uint64_t)r;
      for (int j = 0; j < r; j++) bytes += msgs[j].msg_len;
    }
  }
  close(fd);
  double span = last - first;
  printf("received=%llu pps=%.0f bytes=%llu\n", (unsigned long long)received,
         span > 0 ? (double)(received - first_batch) / span : 0.0, (unsigned long long)bytes);
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  if (!strcmp(argv[1], "send")) return run_send(argc - 2, argv + 2);
  if (!strcmp(argv[1], "recv")) return run_recv(argc - 2, argv + 2);
  usage();
  return 2;
}
