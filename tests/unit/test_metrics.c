/* test_metrics.c: the capped buffer, Prometheus writers, histograms, request counters. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <cmocka.h>

#include "server/metrics.h"

/* Does buf hold line (without its newline) as a whole line? */
static bool has_line(const char *buf, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = buf; (p = strstr(p, line)) != NULL; p++)
		if ((p == buf || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

static size_t count_str(const char *buf, const char *s)
{
	size_t n = 0;
	for (const char *p = buf; (p = strstr(p, s)) != NULL; p += strlen(s))
		n++;
	return n;
}

/* ---- cm_buf ------------------------------------------------------------------- */

static void test_buf_zeroed_struct_appends_and_stays_nul_terminated(void **state)
{
	(void)state;
	struct cm_buf b = { 0 };
	assert_int_equal(cm_buf_printf(&b, "%s=%d", "a", 1), 0);
	assert_int_equal(cm_buf_append(&b, ";", 1), 0);
	assert_string_equal(b.p, "a=1;");
	assert_int_equal(b.len, 4);
	assert_int_equal(cm_buf_append(&b, NULL, 0), 0);
	assert_int_equal(b.len, 4);
	cm_buf_free(&b);
	assert_null(b.p);
	assert_int_equal(b.len, 0);
}

static void test_buf_grows_past_first_allocation(void **state)
{
	(void)state;
	struct cm_buf b;
	cm_buf_init(&b, 0);
	for (int i = 0; i < 20000; i++)
		assert_int_equal(cm_buf_printf(&b, "%05d\n", i), 0);
	assert_int_equal(b.len, 20000 * 6);
	assert_memory_equal(b.p + 6 * 12345, "12345\n", 6);
	assert_int_equal(b.p[b.len], '\0');
	cm_buf_free(&b);
}

static void test_buf_cap_refuses_whole_write_and_sticks(void **state)
{
	(void)state;
	struct cm_buf b;
	cm_buf_init(&b, 10);
	assert_int_equal(cm_buf_append(&b, "12345678", 8), 0);
	assert_int_equal(cm_buf_printf(&b, "%s", "abc"), -ENOBUFS);
	assert_int_equal(b.err, -ENOBUFS);
	assert_string_equal(b.p, "12345678"); /* nothing of the failed write */
	/* It would fit now, but the page is already incomplete: still refused. */
	assert_int_equal(cm_buf_append(&b, "x", 1), -ENOBUFS);
	assert_int_equal(b.len, 8);
	cm_buf_free(&b);
}

static void test_buf_cap_allows_exactly_max(void **state)
{
	(void)state;
	struct cm_buf b;
	cm_buf_init(&b, 10);
	assert_int_equal(cm_buf_append(&b, "0123456789", 10), 0);
	assert_int_equal(b.err, 0);
	assert_string_equal(b.p, "0123456789");
	assert_int_equal(cm_buf_append(&b, "", 0), 0);
	assert_int_equal(cm_buf_append(&b, "a", 1), -ENOBUFS);
	cm_buf_free(&b);
}

static void test_buf_default_cap_is_16_mib(void **state)
{
	(void)state;
	struct cm_buf b = { 0 };
	static char chunk[1 << 16];
	memset(chunk, 'x', sizeof(chunk));
	size_t total = 0;
	while (cm_buf_append(&b, chunk, sizeof(chunk)) == 0)
		total += sizeof(chunk);
	assert_int_equal(total, CM_BUF_MAX_DEFAULT);
	assert_int_equal(b.err, -ENOBUFS);
	assert_true(b.cap <= CM_BUF_MAX_DEFAULT + 1);
	cm_buf_free(&b);
}

static void test_buf_steal_hands_over_the_content(void **state)
{
	(void)state;
	struct cm_buf b;
	cm_buf_init(&b, 100);
	assert_null(cm_buf_steal(&b));
	cm_buf_printf(&b, "hello");
	char *p = cm_buf_steal(&b);
	assert_string_equal(p, "hello");
	assert_null(b.p);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.max, 100);
	free(p);
	cm_buf_free(&b);
}

/* ---- labels, headers, samples ---------------------------------------------------- */

static void test_label_escapes_backslash_quote_newline(void **state)
{
	(void)state;
	char l[128] = "";
	assert_int_equal(cm_metrics_label_append(l, sizeof(l), "path", "/a\\b\"c\nd"), 0);
	assert_string_equal(l, "path=\"/a\\\\b\\\"c\\nd\"");
	assert_int_equal(cm_metrics_label_append(l, sizeof(l), "role", "leader"), 0);
	assert_string_equal(l, "path=\"/a\\\\b\\\"c\\nd\",role=\"leader\"");
}

static void test_label_replaces_invalid_utf8(void **state)
{
	(void)state;
	char l[128] = "";
	/* é is valid and kept; a lone continuation byte, an overlong '/' and a
	 * UTF-16 surrogate are not, and each bad byte becomes U+FFFD. */
	assert_int_equal(cm_metrics_label_append(l, sizeof(l), "k", "\xc3\xa9|\x80|\xc0\xaf|\xed\xa0\x80"), 0);
	assert_string_equal(l, "k=\"\xc3\xa9|\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|"
			       "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
	l[0] = '\0';
	assert_int_equal(cm_metrics_label_append(l, sizeof(l), "k", "\xf0\x9f\x98\x80 \xe2\x82"), 0);
	assert_string_equal(l, "k=\"\xf0\x9f\x98\x80 \xef\xbf\xbd\xef\xbf\xbd\"");
}

static void test_label_too_long_leaves_dst_unchanged(void **state)
{
	(void)state;
	char l[16] = "";
	assert_int_equal(cm_metrics_label_append(l, sizeof(l), "a", "12345678901"), 0);
	assert_string_equal(l, "a=\"12345678901\""); /* 15 bytes + NUL: exactly full */
	assert_int_equal(cm_metrics_label_append(l, sizeof(l), "b", ""), -ENAMETOOLONG);
	assert_string_equal(l, "a=\"12345678901\"");
	char m[8] = "";
	assert_int_equal(cm_metrics_label_append(m, sizeof(m), "k", "\"\""), -ENAMETOOLONG);
	assert_string_equal(m, "");
}

static void test_header_escapes_help(void **state)
{
	(void)state;
	struct cm_buf b = { 0 };
	assert_int_equal(cm_metrics_write_header(&b, "confman_x", "a \\ \"b\"\nc", "gauge"), 0);
	assert_string_equal(b.p, "# HELP confman_x a \\\\ \"b\"\\nc\n# TYPE confman_x gauge\n");
	cm_buf_free(&b);
}

static void test_values_with_and_without_labels(void **state)
{
	(void)state;
	struct cm_buf b = { 0 };
	cm_metrics_write_value(&b, "g", NULL, 3);
	cm_metrics_write_value(&b, "g", "", 0.1);
	cm_metrics_write_value(&b, "g", "group=\"1\"", -2.5e-7);
	cm_metrics_write_value(&b, "g", NULL, NAN);
	cm_metrics_write_value(&b, "g", NULL, INFINITY);
	cm_metrics_write_value(&b, "g", NULL, -INFINITY);
	cm_metrics_write_value(&b, "g", NULL, 1.0 / 3.0);
	assert_int_equal(cm_metrics_write_u64(&b, "c_total", "a=\"b\"", UINT64_MAX), 0);
	assert_string_equal(b.p, "g 3\ng 0.1\ng{group=\"1\"} -2.5e-07\ng NaN\ng +Inf\ng -Inf\n"
				 "g 0.33333333333333331\n"
				 "c_total{a=\"b\"} 18446744073709551615\n");
	assert_true(strtod("0.33333333333333331", NULL) == 1.0 / 3.0);
	cm_buf_free(&b);
}

/* ---- histograms ------------------------------------------------------------------ */

static void test_hist_bounds_from_100us_to_10s(void **state)
{
	(void)state;
	assert_int_equal(cm_metrics_hist_bound_ns(0), 100000);
	assert_int_equal(cm_metrics_hist_bound_ns(CM_HIST_BUCKETS - 1), 10000000000ull);
	for (unsigned i = 1; i < CM_HIST_BUCKETS; i++)
		assert_true(cm_metrics_hist_bound_ns(i) > cm_metrics_hist_bound_ns(i - 1));
}

static void test_hist_bucket_bounds_are_inclusive(void **state)
{
	(void)state;
	struct cm_hist h = { 0 };
	cm_metrics_hist_observe(&h, 0);
	cm_metrics_hist_observe(&h, 100000);          /* exactly 0.0001 s */
	cm_metrics_hist_observe(&h, 100001);          /* just above */
	cm_metrics_hist_observe(&h, 10000000000ull);  /* exactly 10 s */
	cm_metrics_hist_observe(&h, 10000000001ull);  /* only +Inf */
	assert_int_equal(h.n[0], 2);
	assert_int_equal(h.n[1], 1);
	assert_int_equal(h.n[CM_HIST_BUCKETS - 1], 1);
	assert_int_equal(h.n[CM_HIST_BUCKETS], 1);
	assert_int_equal(h.count, 5);
	assert_int_equal(h.sum_ns, 20000200002ull);
}

static void test_hist_writes_cumulative_buckets_sum_count(void **state)
{
	(void)state;
	struct cm_hist h = { 0 };
	cm_metrics_hist_observe(&h, 300000);     /* 0.3 ms: le 0.0005 */
	cm_metrics_hist_observe(&h, 2000000);    /* 2 ms: le 0.0025 */
	cm_metrics_hist_observe(&h, 2000000);
	cm_metrics_hist_observe(&h, 12000000000ull); /* 12 s */
	struct cm_buf b = { 0 };
	assert_int_equal(cm_metrics_write_hist(&b, "confman_lat_seconds", "Latency.", NULL, &h), 0);
	const char *want =
		"# HELP confman_lat_seconds Latency.\n"
		"# TYPE confman_lat_seconds histogram\n"
		"confman_lat_seconds_bucket{le=\"0.0001\"} 0\n"
		"confman_lat_seconds_bucket{le=\"0.00025\"} 0\n"
		"confman_lat_seconds_bucket{le=\"0.0005\"} 1\n"
		"confman_lat_seconds_bucket{le=\"0.001\"} 1\n"
		"confman_lat_seconds_bucket{le=\"0.0025\"} 3\n"
		"confman_lat_seconds_bucket{le=\"0.005\"} 3\n"
		"confman_lat_seconds_bucket{le=\"0.01\"} 3\n"
		"confman_lat_seconds_bucket{le=\"0.025\"} 3\n"
		"confman_lat_seconds_bucket{le=\"0.05\"} 3\n"
		"confman_lat_seconds_bucket{le=\"0.1\"} 3\n"
		"confman_lat_seconds_bucket{le=\"0.25\"} 3\n"
		"confman_lat_seconds_bucket{le=\"0.5\"} 3\n"
		"confman_lat_seconds_bucket{le=\"1\"} 3\n"
		"confman_lat_seconds_bucket{le=\"2.5\"} 3\n"
		"confman_lat_seconds_bucket{le=\"5\"} 3\n"
		"confman_lat_seconds_bucket{le=\"10\"} 3\n"
		"confman_lat_seconds_bucket{le=\"+Inf\"} 4\n"
		"confman_lat_seconds_sum 12.004300000\n"
		"confman_lat_seconds_count 4\n";
	assert_string_equal(b.p, want);
	cm_buf_free(&b);
}

static void test_hist_with_labels_and_no_header(void **state)
{
	(void)state;
	struct cm_hist h = { 0 };
	cm_metrics_hist_observe(&h, 1500);
	struct cm_buf b = { 0 };
	cm_metrics_write_hist(&b, "lat", NULL, "op=\"get\"", &h);
	assert_null(strstr(b.p, "# "));
	assert_true(has_line(b.p, "lat_bucket{op=\"get\",le=\"0.0001\"} 1"));
	assert_true(has_line(b.p, "lat_bucket{op=\"get\",le=\"+Inf\"} 1"));
	assert_true(has_line(b.p, "lat_sum{op=\"get\"} 0.000001500"));
	assert_true(has_line(b.p, "lat_count{op=\"get\"} 1"));
	assert_int_equal(count_str(b.p, "\n"), CM_HIST_BUCKETS + 3);
	cm_buf_free(&b);
}

static void test_hist_empty_and_saturated_sum(void **state)
{
	(void)state;
	struct cm_hist h = { 0 };
	struct cm_buf b = { 0 };
	cm_metrics_write_hist(&b, "e", NULL, NULL, &h);
	assert_true(has_line(b.p, "e_bucket{le=\"+Inf\"} 0"));
	assert_true(has_line(b.p, "e_sum 0.000000000"));
	assert_true(has_line(b.p, "e_count 0"));
	cm_metrics_hist_observe(&h, UINT64_MAX - 5);
	cm_metrics_hist_observe(&h, 10);
	assert_int_equal(h.sum_ns, UINT64_MAX);
	assert_int_equal(h.count, 2);
	cm_buf_free(&b);
}

/* ---- requests by op and result ------------------------------------------------------ */

static void test_hist_quantiles_are_bucket_bounds(void **state)
{
	(void)state;
	struct cm_hist h = {0};
	assert_int_equal(cm_metrics_hist_quantile_ns(&h, 0.5), 0);
	for (int k = 0; k < 98; k++)
		cm_metrics_hist_observe(&h, 50000); /* 50 us: the first bucket */
	cm_metrics_hist_observe(&h, cm_metrics_hist_bound_ns(5));
	cm_metrics_hist_observe(&h, cm_metrics_hist_bound_ns(5));
	assert_int_equal(cm_metrics_hist_quantile_ns(&h, 0.5), cm_metrics_hist_bound_ns(0));
	assert_int_equal(cm_metrics_hist_quantile_ns(&h, 0.98), cm_metrics_hist_bound_ns(0));
	assert_int_equal(cm_metrics_hist_quantile_ns(&h, 0.99), cm_metrics_hist_bound_ns(5));
	assert_int_equal(cm_metrics_hist_quantile_ns(&h, 1.0), cm_metrics_hist_bound_ns(5));
	cm_metrics_hist_observe(&h, 60ull * 1000000000); /* a minute: past every bound */
	assert_int_equal(cm_metrics_hist_quantile_ns(&h, 1.0), UINT64_MAX);
}

static void test_request_sums_count_failures_for_the_service(void **state)
{
	(void)state;
	struct cm_req_counters c = {0};
	uint64_t total, failed;
	cm_metrics_count_request(&c, CM_OP_GET, 0);
	cm_metrics_count_request(&c, CM_OP_GET, -ENOENT);
	cm_metrics_count_request(&c, CM_OP_PUT, -ECANCELED);
	cm_metrics_count_request(&c, CM_OP_PUT, -EINVAL);
	cm_metrics_count_request(&c, CM_OP_PUT, CM_ENOTLEADER);
	cm_metrics_count_request(&c, CM_OP_PUT, -ENOSPC);
	cm_metrics_count_request(&c, 200, -EIO);
	cm_metrics_requests_sum(&c, &total, &failed);
	assert_int_equal(total, 7);
	assert_int_equal(failed, 2); /* ENOSPC, EIO */
}

static void test_result_classes(void **state)
{
	(void)state;
	static const struct {
		int err;
		enum cm_result want;
	} cases[] = {
		{ 0, CM_RESULT_OK },
		{ -ENOENT, CM_RESULT_NOT_FOUND },
		{ -EEXIST, CM_RESULT_CONFLICT },
		{ -ENOTEMPTY, CM_RESULT_CONFLICT },
		{ -ECANCELED, CM_RESULT_CONFLICT },
		{ -ENOTDIR, CM_RESULT_CONFLICT },
		{ -EISDIR, CM_RESULT_CONFLICT },
		{ CM_ECONFPENDING, CM_RESULT_CONFLICT },
		{ CM_ENOTLEADER, CM_RESULT_NOT_LEADER },
		{ CM_ENOLEADER, CM_RESULT_UNAVAILABLE },
		{ CM_ETRANSFERRING, CM_RESULT_UNAVAILABLE },
		{ CM_ESTALE, CM_RESULT_UNAVAILABLE },
		{ CM_ESHUTDOWN, CM_RESULT_UNAVAILABLE },
		{ CM_ELAGGING, CM_RESULT_UNAVAILABLE },
		{ -ETIMEDOUT, CM_RESULT_UNAVAILABLE },
		{ -EBUSY, CM_RESULT_UNAVAILABLE },
		{ -ENOSPC, CM_RESULT_UNAVAILABLE },
		{ -ENOBUFS, CM_RESULT_UNAVAILABLE },
		{ -EINVAL, CM_RESULT_INVALID },
		{ -ENAMETOOLONG, CM_RESULT_INVALID },
		{ -EFBIG, CM_RESULT_INVALID },
		{ -EMSGSIZE, CM_RESULT_INVALID },
		{ -EBADMSG, CM_RESULT_INVALID },
		{ -EXDEV, CM_RESULT_INVALID },
		{ -EIO, CM_RESULT_OTHER },
		{ -ENOMEM, CM_RESULT_OTHER },
		{ CM_EWRONGSHARD, CM_RESULT_OTHER },
		{ CM_ECOMPACTED, CM_RESULT_OTHER },
		{ CM_EUNKNOWNPEER, CM_RESULT_OTHER },
		{ 5, CM_RESULT_OTHER },        /* positive: not a Confman code */
		{ -20000, CM_RESULT_OTHER },   /* in the project range, unassigned */
		{ -4000, CM_RESULT_OTHER },    /* errno-sized, unknown */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (cm_metrics_result(cases[i].err) != cases[i].want)
			fail_msg("err %d: class %s, want %s", cases[i].err,
				 cm_metrics_result_name(cm_metrics_result(cases[i].err)),
				 cm_metrics_result_name(cases[i].want));
	}
	assert_string_equal(cm_metrics_result_name(CM_RESULT_NOT_LEADER), "not_leader");
	assert_string_equal(cm_metrics_result_name(CM_RESULT_COUNT), "other");
}

static void test_every_op_has_a_distinct_name(void **state)
{
	(void)state;
	for (unsigned op = 1; op < CM_OP_COUNT; op++) {
		const char *n = cm_metrics_op_name((uint8_t)op);
		assert_string_not_equal(n, "unknown");
		for (unsigned o2 = 1; o2 < op; o2++)
			assert_string_not_equal(n, cm_metrics_op_name((uint8_t)o2));
	}
	assert_string_equal(cm_metrics_op_name(CM_OP_PUT), "put");
	assert_string_equal(cm_metrics_op_name(0), "unknown");
	assert_string_equal(cm_metrics_op_name(CM_OP_COUNT), "unknown");
	assert_string_equal(cm_metrics_op_name(255), "unknown");
}

static void test_request_counters_written_by_op_and_result(void **state)
{
	(void)state;
	struct cm_req_counters c = { 0 };
	cm_metrics_count_request(&c, CM_OP_PUT, 0);
	cm_metrics_count_request(&c, CM_OP_PUT, 0);
	cm_metrics_count_request(&c, CM_OP_PUT, -ECANCELED);
	cm_metrics_count_request(&c, CM_OP_GET, CM_ENOTLEADER);
	cm_metrics_count_request(&c, CM_OP_GET, -ENOENT);
	struct cm_buf b = { 0 };
	assert_int_equal(cm_metrics_write_requests(&b, &c), 0);
	assert_int_equal(count_str(b.p, "# HELP confman_requests_total "), 1);
	assert_true(has_line(b.p, "# TYPE confman_requests_total counter"));
	assert_true(has_line(b.p, "confman_requests_total{op=\"put\",result=\"ok\"} 2"));
	assert_true(has_line(b.p, "confman_requests_total{op=\"put\",result=\"conflict\"} 1"));
	assert_true(has_line(b.p, "confman_requests_total{op=\"get\",result=\"not_leader\"} 1"));
	assert_true(has_line(b.p, "confman_requests_total{op=\"get\",result=\"not_found\"} 1"));
	assert_true(has_line(b.p, "confman_requests_total{op=\"status\",result=\"other\"} 0"));
	/* Every known op and class, zeros included; no "unknown" row yet. */
	assert_int_equal(count_str(b.p, "confman_requests_total{"),
			 (CM_OP_COUNT - 1) * CM_RESULT_COUNT);
	assert_null(strstr(b.p, "unknown"));
	cm_buf_free(&b);
}

static void test_request_counters_unknown_op_row(void **state)
{
	(void)state;
	struct cm_req_counters c = { 0 };
	cm_metrics_count_request(&c, 0, -EINVAL);
	cm_metrics_count_request(&c, 200, -EINVAL);
	cm_metrics_count_request(&c, CM_OP_COUNT, 0);
	assert_int_equal(c.n[0][CM_RESULT_INVALID], 2);
	assert_int_equal(c.n[0][CM_RESULT_OK], 1);
	struct cm_buf b = { 0 };
	cm_metrics_write_requests(&b, &c);
	assert_true(has_line(b.p, "confman_requests_total{op=\"unknown\",result=\"invalid\"} 2"));
	assert_int_equal(count_str(b.p, "confman_requests_total{"), CM_OP_COUNT * CM_RESULT_COUNT);
	cm_buf_free(&b);
}

static void test_writers_report_a_full_buffer(void **state)
{
	(void)state;
	struct cm_req_counters c = { 0 };
	struct cm_buf b;
	cm_buf_init(&b, 200);
	assert_int_equal(cm_metrics_write_requests(&b, &c), -ENOBUFS);
	assert_true(b.len <= 200);
	assert_int_equal(b.p[b.len - 1], '\n'); /* whole lines only */
	struct cm_hist h = { 0 };
	assert_int_equal(cm_metrics_write_hist(&b, "x", "y", NULL, &h), -ENOBUFS);
	assert_int_equal(cm_metrics_write_value(&b, "x", NULL, 1), -ENOBUFS);
	cm_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_zeroed_struct_appends_and_stays_nul_terminated),
		cmocka_unit_test(test_buf_grows_past_first_allocation),
		cmocka_unit_test(test_hist_quantiles_are_bucket_bounds),
		cmocka_unit_test(test_request_sums_count_failures_for_the_service),
		cmocka_unit_test(test_buf_cap_refuses_whole_write_and_sticks),
		cmocka_unit_test(test_buf_cap_allows_exactly_max),
		cmocka_unit_test(test_buf_default_cap_is_16_mib),
		cmocka_unit_test(test_buf_steal_hands_over_the_content),
		cmocka_unit_test(test_label_escapes_backslash_quote_newline),
		cmocka_unit_test(test_label_replaces_invalid_utf8),
		cmocka_unit_test(test_label_too_long_leaves_dst_unchanged),
		cmocka_unit_test(test_header_escapes_help),
		cmocka_unit_test(test_values_with_and_without_labels),
		cmocka_unit_test(test_hist_bounds_from_100us_to_10s),
		cmocka_unit_test(test_hist_bucket_bounds_are_inclusive),
		cmocka_unit_test(test_hist_writes_cumulative_buckets_sum_count),
		cmocka_unit_test(test_hist_with_labels_and_no_header),
		cmocka_unit_test(test_hist_empty_and_saturated_sum),
		cmocka_unit_test(test_result_classes),
		cmocka_unit_test(test_every_op_has_a_distinct_name),
		cmocka_unit_test(test_request_counters_written_by_op_and_result),
		cmocka_unit_test(test_request_counters_unknown_op_row),
		cmocka_unit_test(test_writers_report_a_full_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
