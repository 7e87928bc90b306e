/* fuzz_tls.c — libFuzzer harness of the TLS transport's server side (user/tls.c) with a real
 * loop: the input is what a client sends on a TLS port, handed to transport_tls.received in pieces
 * whose sizes come from the data. The first look (record header, SNI, plaintext HTTP or garbage),
 * wolfSSL's ClientHello parsing with the gateway's settings, and the session-ticket decryption of
 * whatever ticket the input carries all run; nothing is sent (the socket reads as busy), so
 * ciphertext only queues. Every outcome is allowed but a crash, a leak or a read out of bounds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop.h"
#include "ring.h"
#include "sock.h"
#include "tls.h"

static const char KEY[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg1voduD81hPQne5xn\n"
	"DkX7FQbByFYZlcmr9KsNiPt5u02hRANCAAQ2e2LMxTmNOd19KrlDyEbReR5DSasQ\n"
	"UeElsgXAvbY88Q5S1AIChzvXToFXZMtoXq1DXKcWuO5CNs+7msNsKAIs\n"
	"-----END PRIVATE KEY-----\n";
static const char CERT[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBlTCCATqgAwIBAgITSaYe/TcEOPBCns0lZTW7So/YxTAKBggqhkjOPQQDAjAU\n"
	"MRIwEAYDVQQDDAlmdXp6LnRlc3QwIBcNMjYxMjA2MDgzNTE5WhgPMjEyNjExMTIw\n"
	"ODM1MTlaMBQxEjAQBgNVBAMMCWZ1enoudGVzdDBZMBMGByqGSM49AgEGCCqGSM49\n"
	"AwEHA0IABDZ7YszFOY053X0quUPIRtF5HkNJqxBR4SWyBcC9tjzxDlLUAgKHO9dO\n"
	"gVdky2herUNcpxa47kI2z7uaw2woAiyjaTBnMB0GA1UdDgQWBBTrODTG0iJyoWpv\n"
	"pAzUwXIdgSiAGzAfBgNVHSMEGDAWgBTrODTG0iJyoWpvpAzUwXIdgSiAGzAPBgNV\n"
	"HRMBAf8EBTADAQH/MBQGA1UdEQQNMAuCCWZ1enoudGVzdDAKBggqhkjOPQQDAgNJ\n"
	"ADBGAiEAsWQLtTiPiu52P64k0iQAwB47R2xJ8cdxu8ESEFboRDUCIQCQWG72EwI7\n"
	"u/SgcIlbzwsSQNTNYRKPEGvImrHvBlp1+g==\n"
	"-----END CERTIFICATE-----\n";

static struct loop L;
static struct tls_server *SRV;

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f))
		abort();
}

static void setup(void)
{
	char dir[] = "/tmp/ringway-fuzz-tls-XXXXXX", cert[64], key[64];
	if (!mkdtemp(dir))
		abort();
	snprintf(cert, sizeof cert, "%s/c.pem", dir);
	snprintf(key, sizeof key, "%s/k.pem", dir);
	write_file(cert, CERT);
	write_file(key, KEY);
	unsigned features;
	if (tls_init() || ring_open(&L.ring, &features) < 0 ||
	    loop_init(&L, LOOP_BUFS_CONTROL, 16384, 1))
		abort();
	static struct rw_tls_cert certs[1];
	certs[0] = (struct rw_tls_cert){ .cert = cert, .key = key };
	struct rw_tls_server cfg = { .certs = certs, .ncerts = 1 };
	char err[256];
	int bad;
	if (!(SRV = tls_server_build(&cfg, err, sizeof err, &bad))) {
		fprintf(stderr, "fuzz_tls: %s\n", err);
		abort();
	}
	unlink(cert);
	unlink(key);
	rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static int ready;
	if (!ready) {
		setup();
		ready = 1;
	}
	struct sock s;
	sock_init(&s, -1, BUF_GROUP_CLIENT, NULL, &transport_plain);
	s.send_busy = true; /* nothing goes to the ring: ciphertext queues */
	if (tls_accept(&L, &s, SRV))
		return 0;
	size_t off = 0;
	int ret = 0;
	while (off < len && ret == 0) {
		size_t piece = 1 + (size_t)data[off] % 700;
		if (piece > len - off)
			piece = len - off;
		uint32_t id = buf_heap_get(&L.bufs);
		if (id == UINT32_MAX)
			break;
		memcpy(buf_ptr(&L.bufs, id), data + off, piece);
		ret = s.tx->received(&L, &s, id, (uint32_t)piece);
		off += piece;
	}
	s.tx->release(&L, &s);
	segq_clear(&L.bufs, &s.in);
	segq_clear(&L.bufs, &s.out);
	return 0;
}
