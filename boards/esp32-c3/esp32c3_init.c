/*
 * esp32c3_init.c — ESP32-C3 bare-metal board init, run by picolibc's crt0 as a constructor
 * (before main).
 *
 * When the ROM boots from flash it arms two watchdogs with "flash boot protection": the RTC
 * watchdog (RWDT) and the timer-group-0 watchdog (MWDT0); the super watchdog (SWD) is always
 * on. ESP-IDF's second-stage bootloader turns them off; we have no second stage, so we do it
 * here, or the chip resets a few seconds into training.
 *
 * Registers (ESP32-C3 TRM, esp-idf soc/rtc_cntl_reg.h and soc/timer_group_reg.h):
 *   RTC_CNTL base 0x60008000: WDTCONFIG0 +0x90, WDTWPROTECT +0xA8 (key 0x50D83AA1),
 *                             SWD_CONF +0xAC (bit 30 SWD_DISABLE), SWD_WPROTECT +0xB0
 *                             (key 0x8F1D312A)
 *   TIMG0    base 0x6001F000: WDTCONFIG0 +0x48, WDTWPROTECT +0x64 (key 0x50D83AA1)
 * Writing 0 to a WDTCONFIG0 clears WDT_EN and WDT_FLASHBOOT_MOD_EN.
 */
#include <stdint.h>

#define TT_REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

#define TT_RTC_CNTL_WDTCONFIG0 TT_REG(0x60008090u)
#define TT_RTC_CNTL_WDTWPROTECT TT_REG(0x600080A8u)
#define TT_RTC_CNTL_SWD_CONF TT_REG(0x600080ACu)
#define TT_RTC_CNTL_SWD_WPROTECT TT_REG(0x600080B0u)
#define TT_TIMG0_WDTCONFIG0 TT_REG(0x6001F048u)
#define TT_TIMG0_WDTWPROTECT TT_REG(0x6001F064u)

#define TT_WDT_WKEY 0x50D83AA1u
#define TT_SWD_WKEY 0x8F1D312Au

__attribute__((constructor)) static void tt_esp32c3_disable_watchdogs(void)
{
    TT_RTC_CNTL_WDTWPROTECT = TT_WDT_WKEY;
    TT_RTC_CNTL_WDTCONFIG0 = 0u;
    TT_RTC_CNTL_WDTWPROTECT = 0u;

    TT_RTC_CNTL_SWD_WPROTECT = TT_SWD_WKEY;
    TT_RTC_CNTL_SWD_CONF |= 1u << 30;
    TT_RTC_CNTL_SWD_WPROTECT = 0u;

    TT_TIMG0_WDTWPROTECT = TT_WDT_WKEY;
    TT_TIMG0_WDTCONFIG0 = 0u;
    TT_TIMG0_WDTWPROTECT = 0u;
}
