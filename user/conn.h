/* conn.h — a client connection's life: accept, read request heads (in place in the ring buffer,
 * coalesced into a heap buffer only when a head spans buffers), refuse bad requests with the
 * reason's status and JSON body, hand good ones to an exchange, keep-alive and pipelining, the
 * header / keep-alive / client timeouts, and draining on shutdown. To its exchange it offers a
 * narrow downstream API: send, refuse, close-after, done, failed. */
#ifndef RINGWAY_CONN_H
#define RINGWAY_CONN_H

#include <netinet/in.h>

#include "reason.h"
#include "sock.h"

struct shard;
struct exchange;

enum client_state {
	C_IDLE = 0,  /* between requests */
	C_HEAD,      /* first bytes of a head received */
	C_EXCHANGE,  /* an exchange runs: body, stages, upstream, response */
	C_DONE       /* answered; closing once the answer is sent */
};

struct client {
	struct sock s; /* first: the ring's user_data points here */
	struct shard *sh;
	struct exchange *x;
	struct client *prev, *next; /* the shard's list */
	uint32_t listener;    /* index of the shard's listener that accepted it */
	uint8_t state;
	bool close_after;     /* close once the current response is sent */
	bool in_process;      /* client_process is on the stack */
	bool lingering;       /* answered, FIN sent: dropping input until the client closes */
	bool handshaking;     /* a TLS handshake runs (its own timeout) */
	uint16_t peer_port;
	uint8_t peer_family;
	uint8_t peer_addr[16];
};

void client_accepted(struct shard *sh, uint32_t listener, int fd);
/* Closes the connection now, dropping the exchange in progress. */
void client_close(struct client *c);
/* Drain on shutdown: close if idle, otherwise close after the current response. */
void client_drain(struct client *c);
/* "ip" text of the peer into out (INET6_ADDRSTRLEN). */
void client_peer_ip(const struct client *c, char *out, size_t cap);

/* The downstream API of the exchange. */
/* The exchange of the request just handed over (from exchange_start, before its stages run). */
void client_attach(struct client *c, struct exchange *x);
/* Bytes were queued on the client's out queue: send them. */
void client_send(struct client *c);
/* Answers the current request with the reason's error response and ends the exchange. close:
 * close the connection after it (always for malformed requests). */
void client_refuse(struct client *c, enum rw_reason r, const char *extra, bool close);
/* Answers the current request with the gateway's own body of any size (heap buffers; only the
 * head for HEAD), extra header lines (may be NULL; each ending in CRLF), logged and counted with
 * reason r; ends the exchange. */
void client_answer_own(struct client *c, int status, enum rw_reason r, const char *type,
		       const char *extra, const char *body, size_t len, bool head_only);
/* Answers the current request with a head without body (a 204: status, the header lines, each
 * ending in CRLF, X-Request-Id) and ends the exchange. */
void client_answer_empty(struct client *c, int status, const char *lines);
/* The connection ends after this response (the answer says Connection: close). */
void client_close_after(struct client *c);
/* Whether it will (draining, or told so before). */
bool client_closes_after(const struct client *c);
/* The exchange changed what the client is waiting for: its deadline is armed again. */
void client_arm_timer(struct client *c);
/* The answer is fully queued: log the exchange, then keep-alive or close. */
void client_exchange_done(struct client *c);
/* The exchange failed with r after its answer began, or the client stopped reading or sending:
 * log it and close the connection. */
void client_exchange_failed(struct client *c, enum rw_reason r);

#endif
