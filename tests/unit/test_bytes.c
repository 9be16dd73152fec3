/*
 * test_bytes.c - eds_bytes.h: little-endian round trips and CRC-32 check values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "eds_bytes.h"

static void test_crc32_known_value(void **state)
{
    (void)state;
    /* the standard check value of CRC-32/ISO-HDLC, whole and chained */
    assert_int_equal(eds_crc32(0, "123456789", 9), 0xCBF43926u);
    assert_int_equal(eds_crc32(eds_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
    assert_int_equal(eds_crc32(0, "", 0), 0);
}

static void test_le_layout_and_round_trip(void **state)
{
    (void)state;
    unsigned char b[8];
    eds_put_le32(b, 0x11223344u);
    assert_int_equal(b[0], 0x44);
    assert_int_equal(b[3], 0x11);
    assert_int_equal(eds_get_le32(b), 0x11223344u);
    eds_put_le16(b, 0xBEEF);
    assert_int_equal(b[0], 0xEF);
    assert_int_equal(eds_get_le16(b), 0xBEEF);
    eds_put_le64(b, 0x0102030405060708ull);
    assert_int_equal(b[0], 0x08);
    assert_int_equal(b[7], 0x01);
    assert_true(eds_get_le64(b) == 0x0102030405060708ull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32_known_value),
        cmocka_unit_test(test_le_layout_and_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
