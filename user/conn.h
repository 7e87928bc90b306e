/* conn.h — a client connection's life: accept, read request heads (in place in the ring buffer,
 * coalesced into a heap buffer only when a head spans buffers), refuse bad requests with the
 * reason's status and JSON body, hand good ones to the proxy, keep-alive and pipelining, the
 * header / keep-alive / client timeouts, and draining on shutdown. */
#ifndef RINGWAY_CONN_H
#define RINGWAY_CONN_H

#include <netinet/in.h>

#include "reason.h"
#include "sock.h"

struct worker;
struct listener;
struct exchange;

enum client_state {
	C_IDLE = 0, /* between requests */
	C_HEAD,     /* first bytes of a head received */
	C_BODY,     /* forwarding the request body */
	C_WAIT,     /* request forwarded; response on its way */
	C_DONE      /* answered; closing once the answer is sent */
};

struct client {
	struct sock s; /* first: the ring's user_data points here */
	struct worker *w;
	const struct listener *l;
	struct exchange *x;
	struct client *prev, *next; /* the worker's list */
	uint8_t state;
	bool close_after;     /* close once the current response is sent */
	bool in_process;      /* client_process is on the stack */
	bool lingering;       /* answered, FIN sent: dropping input until the client closes */
	uint16_t peer_port;
	uint8_t peer_family;
	uint8_t peer_addr[16];
};

void client_accepted(struct worker *w, const struct listener *l, int fd);
void client_on_data(struct client *c);
void client_on_eof(struct client *c, int err);
void client_on_sent(struct client *c);
void client_on_send_error(struct client *c, int err);
void client_free(struct client *c);
/* Closes the connection now, dropping the exchange in progress. */
void client_close(struct client *c);

/* Answers the current request with the reason's error response and ends the exchange. close:
 * close the connection after it (always for malformed requests). */
void client_refuse(struct client *c, enum rw_reason r, const char *allow, bool close);
/* The exchange is over (response fully queued): log it, then keep-alive or close. */
void client_exchange_done(struct client *c);
/* Forwards request body bytes that are waiting in c->s.in (called again when the upstream drains). */
void client_pump_body(struct client *c);
/* "ip" text of the peer into out (INET6_ADDRSTRLEN). */
void client_peer_ip(const struct client *c, char *out, size_t cap);
/* Arms the connection's deadline for its state (keep-alive, header, client stall). */
void client_arm_timer(struct client *c);
/* Drain on shutdown: close if idle, otherwise close after the current response. */
void client_drain(struct client *c);

#endif
