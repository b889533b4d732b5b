/* Docker credential helpers: `docker-credential-NAME get`, the server URL
 * on standard input, {"ServerURL","Username","Secret"} on standard output,
 * as docker and podman run them.  The secret travels only through the
 * pipe: never in argv nor in the environment, never logged. */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "bounds.h"
#include "buf.h"

extern char **environ;

bool auth_helper_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > 64)
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
		      *p == '.'))
			return false;
	return name[0] != '.';
}

static long ms_left(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(deadline->tv_sec - now.tv_sec) * 1000 +
	       (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

/* Start the helper with pipes on its stdin and stdout; stderr goes to
 * /dev/null (helpers print their own diagnostics there, and we report
 * what they print on stdout). */
static int spawn_helper(const char *prog, pid_t *pid, int *in_fd, int *out_fd,
			struct ferr *e)
{
	posix_spawn_file_actions_t fa;
	int pin[2] = {-1, -1}, pout[2] = {-1, -1}, rc;
	char *argv[] = {(char *)prog, (char *)"get", NULL};

	if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0) {
		rc = errno;
		goto fail;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
	posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	rc = posix_spawnp(pid, prog, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		goto fail;
	close(pin[0]);
	close(pout[1]);
	*in_fd = pin[1];
	*out_fd = pout[0];
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (pin[i] >= 0)
			close(pin[i]);
		if (pout[i] >= 0)
			close(pout[i]);
	}
	if (rc == ENOENT)
		return ferr_set(e, FERR_AUTH, rc,
				"credential helper '%s' is not on PATH", prog);
	return ferr_errno(e, FERR_IO, rc, "cannot run credential helper '%s'",
			  prog);
}

/* Feed `input`, collect stdout (bounded) until EOF or the deadline. */
static int talk(const char *prog, int *in_fdp, int out_fd, const char *input,
		struct buf *out, struct ferr *e)
{
	int in_fd = *in_fdp, rc = -1;
	struct timespec deadline;
	size_t sent = 0, len = strlen(input);
	char chunk[4096];

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += FERRY_CREDHELPER_TIMEOUT_S;
	fcntl(in_fd, F_SETFL, O_NONBLOCK);
	for (;;) {
		struct pollfd pf[2] = {{out_fd, POLLIN, 0},
				       {in_fd, POLLOUT, 0}};
		long left = ms_left(&deadline);
		int np = in_fd >= 0 ? 2 : 1, r;
		ssize_t n;

		if (left <= 0) {
			ferr_set(e, FERR_AUTH, ETIMEDOUT,
				 "credential helper '%s' did not answer within "
				 "%d s",
				 prog, FERRY_CREDHELPER_TIMEOUT_S);
			goto out;
		}
		r = poll(pf, (nfds_t)np, (int)left);
		if (r < 0 && errno != EINTR) {
			ferr_errno(e, FERR_IO, errno,
				   "cannot talk to credential helper '%s'",
				   prog);
			goto out;
		}
		if (r <= 0)
			continue;
		if (np == 2 && pf[1].revents) {
			n = write(in_fd, input + sent, len - sent);
			if (n > 0)
				sent += (size_t)n;
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (n < 0 || sent == len) { /* EPIPE: it did not read */
				close(in_fd);
				in_fd = *in_fdp = -1;
			}
		}
		if (!pf[0].revents)
			continue;
		n = read(out_fd, chunk, sizeof(chunk));
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			ferr_errno(e, FERR_IO, errno,
				   "cannot read from credential helper '%s'",
				   prog);
			goto out;
		}
		if (buf_append(out, chunk, (size_t)n) < 0) {
			ferr_set(e, FERR_AUTH, 0,
				 "credential helper '%s' printed more than %u "
				 "bytes",
				 prog, FERRY_MAX_CREDHELPER_OUTPUT);
			goto out;
		}
	}
	rc = 0;
out:
	OPENSSL_cleanse(chunk, sizeof(chunk));
	return rc;
}

/* Wait for the helper (killed first when `kill_it`); its exit status. */
static int reap(pid_t pid, bool kill_it)
{
	int st = 0;

	if (kill_it)
		kill(pid, SIGKILL);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The helper's answer: Username and Secret; "<token>" as the user name
 * means the secret is an identity (refresh) token. */
static int parse_answer(const char *prog, const struct buf *out,
			struct auth_cred *c, struct ferr *e)
{
	json_t *root = json_loadb((const char *)out->data, out->len, 0, NULL);
	const char *u, *s;
	int rc = -1;

	u = root ? json_string_value(json_object_get(root, "Username")) : NULL;
	s = root ? json_string_value(json_object_get(root, "Secret")) : NULL;
	if (!u || !s || !*s) {
		ferr_set(e, FERR_AUTH, 0,
			 "credential helper '%s' did not answer with a "
			 "Username and a Secret",
			 prog);
		goto out;
	}
	if (strcmp(u, "<token>") == 0) {
		c->user = strdup("");
		c->identity_token = strdup(s);
	} else {
		c->user = strdup(u);
		c->pass = strdup(s);
	}
	if (!c->user || (!c->pass && !c->identity_token)) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	rc = 0;
out:
	json_decref(root); /* jansson does not wipe; the output buffer is */
	return rc;
}

int auth_helper_get(const char *name, const char *server_url,
		    struct auth_cred *c, bool *found, struct ferr *e)
{
	char prog[96];
	struct buf out;
	int in_fd = -1, out_fd = -1, status, rc = -1;
	pid_t pid;
	bool talked;

	*found = false;
	if (!auth_helper_name_ok(name))
		return ferr_set(e, FERR_INPUT, 0,
				"invalid credential helper name '%.100s'",
				name ? name : "");
	snprintf(prog, sizeof(prog), "docker-credential-%s", name);
	buf_init(&out, FERRY_MAX_CREDHELPER_OUTPUT);
	if (spawn_helper(prog, &pid, &in_fd, &out_fd, e) < 0)
		goto out;
	talked = talk(prog, &in_fd, out_fd, server_url, &out, e) == 0;
	if (in_fd >= 0)
		close(in_fd);
	close(out_fd);
	status = reap(pid, !talked);
	if (!talked)
		goto out;
	if (status != 0) {
		char msg[200];
		size_t n = out.len < sizeof(msg) - 1 ? out.len
						     : sizeof(msg) - 1;

		memcpy(msg, out.data ? (char *)out.data : "", n);
		msg[n] = '\0';
		msg[strcspn(msg, "\r\n")] = '\0';
		/* the helpers' own words for "no entry for this server" */
		if (strstr(msg, "credentials not found")) {
			rc = 0;
			goto out;
		}
		ferr_set(e, FERR_AUTH, 0,
			 "credential helper '%s' failed for '%s' (exit %d)%s%s",
			 prog, server_url, status, msg[0] ? ": " : "", msg);
		goto out;
	}
	if (parse_answer(prog, &out, c, e) < 0)
		goto out;
	*found = true;
	rc = 0;
out:
	if (out.data)
		OPENSSL_cleanse(out.data, out.len);
	buf_release(&out);
	return rc;
}
