/* nfdelay: hold every packet of netfilter queues for a fixed time, then accept it.
 *
 * The kernel here has no sch_netem, so the lab (tests/lab) delays packets in user space: iptables
 * sends the packets of one direction of a path to an NFQUEUE, and this program gives each packet
 * its verdict (accept) a fixed delay after it arrived. Packets of one queue leave in the order
 * they came, so a path keeps its order, as a real one mostly does.
 *
 *   nfdelay QUEUE:DELAY_US [QUEUE:DELAY_US ...]
 *
 * Prints "ready" on stdout once every queue is bound (packets sent before that are dropped by
 * the kernel: the rules do not bypass a queue nobody reads), and runs until SIGTERM or SIGINT;
 * then prints what it held to stderr. Only the packet's metadata is copied to user space, never
 * its payload, so a busy path costs little. At most MAX_HELD packets wait in a queue; the
 * kernel drops what comes beyond (a router's full buffer).
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define MAX_QUEUES 8
#define MAX_HELD 65536 /* a power of two: the ring's index wraps with a mask */
#define RECV_BUFFER (8 * 1024 * 1024)

struct held {
    uint32_t id;
    uint64_t due_ns;
};

struct queue {
    struct nfq_q_handle *handle;
    uint16_t number;
    uint64_t delay_ns;
    struct held ring[MAX_HELD];
    uint32_t head, tail; /* held packets are ring[head .. tail), indices taken mod MAX_HELD */
    uint64_t passed, overflowed;
};

static struct queue queues[MAX_QUEUES];
static int queue_count;
static volatile sig_atomic_t stopping;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

static int on_packet(struct nfq_q_handle *handle, struct nfgenmsg *message, struct nfq_data *data,
                     void *context) {
    (void)message;
    struct queue *q = context;
    struct nfqnl_msg_packet_hdr *header = nfq_get_msg_packet_hdr(data);
    if (header == NULL)
        return 0;
    uint32_t id = ntohl(header->packet_id);
    if (q->tail - q->head >= MAX_HELD) { /* cannot happen with the kernel's queue as long */
        q->overflowed++;
        return nfq_set_verdict(handle, id, NF_DROP, 0, NULL);
    }
    struct held *slot = &q->ring[q->tail % MAX_HELD];
    slot->id = id;
    slot->due_ns = now_ns() + q->delay_ns;
    q->tail++;
    return 0;
}

/* Accept every packet whose time has come; returns the nearest due time still held (0: none). */
static uint64_t release_due(uint64_t now) {
    uint64_t next = 0;
    for (int i = 0; i < queue_count; i++) {
        struct queue *q = &queues[i];
        while (q->head != q->tail) {
            struct held *slot = &q->ring[q->head % MAX_HELD];
            if (slot->due_ns > now) {
                if (next == 0 || slot->due_ns < next)
                    next = slot->due_ns;
                break;
            }
            nfq_set_verdict(q->handle, slot->id, NF_ACCEPT, 0, NULL);
            q->head++;
            q->passed++;
        }
    }
    return next;
}

static int usage(void) {
    fprintf(stderr, "usage: nfdelay QUEUE:DELAY_US [QUEUE:DELAY_US ...]\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc - 1 > MAX_QUEUES)
        return usage();
    struct nfq_handle *nfq = nfq_open();
    if (nfq == NULL) {
        perror("nfq_open");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        unsigned number;
        unsigned long long delay_us;
        if (sscanf(argv[i], "%u:%llu", &number, &delay_us) != 2 || number > 65535)
            return usage();
        struct queue *q = &queues[queue_count++];
        q->number = (uint16_t)number;
        q->delay_ns = delay_us * 1000u;
        q->handle = nfq_create_queue(nfq, q->number, on_packet, q);
        if (q->handle == NULL) {
            fprintf(stderr, "nfdelay: cannot bind queue %u: %s\n", number, strerror(errno));
            return 1;
        }
        if (nfq_set_mode(q->handle, NFQNL_COPY_META, 0) < 0 ||
            nfq_set_queue_maxlen(q->handle, MAX_HELD) < 0) {
            fprintf(stderr, "nfdelay: cannot set up queue %u: %s\n", number, strerror(errno));
            return 1;
        }
    }
    int fd = nfq_fd(nfq);
    int size = RECV_BUFFER, on = 1;
    /* As root the buffer may pass rmem_max; a full one would lose packets from our sight. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &on, sizeof on);

    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    printf("ready\n");
    fflush(stdout);

    static char buffer[65536];
    struct pollfd watched = {.fd = fd, .events = POLLIN};
    uint64_t next = 0;
    while (!stopping) {
        struct timespec wait, *timeout = NULL;
        if (next != 0) {
            uint64_t now = now_ns();
            uint64_t left = next > now ? next - now : 0;
            wait.tv_sec = (time_t)(left / 1000000000u);
            wait.tv_nsec = (long)(left % 1000000000u);
            timeout = &wait;
        }
        int ready = ppoll(&watched, 1, timeout, NULL);
        if (ready < 0 && errno != EINTR) {
            perror("ppoll");
            break;
        }
        if (ready > 0) {
            for (;;) {
                ssize_t got = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
                if (got < 0)
                    break; /* EAGAIN: all read (ENOBUFS is switched off) */
                nfq_handle_packet(nfq, buffer, (int)got);
            }
        }
        next = release_due(now_ns());
    }
    for (int i = 0; i < queue_count; i++) {
        struct queue *q = &queues[i];
        fprintf(stderr, "nfdelay: queue %u: %llu packets delayed %llu us, %u still held, %llu over\n",
                q->number, (unsigned long long)q->passed,
                (unsigned long long)(q->delay_ns / 1000u), q->tail - q->head,
                (unsigned long long)q->overflowed);
        nfq_destroy_queue(q->handle);
    }
    nfq_close(nfq);
    return 0;
}
