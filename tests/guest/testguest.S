# migrationd test guest: a bare-metal x86 program that proves a guest runs
# and that its RAM survived a live migration.  See README.md next to this
# file for the serial protocol and the config block.
#
# Image layout (one flat binary linked at 0x7c00, padded to 1 MiB):
#   0x000  boot sector (16-bit): load the next sectors, A20, enter PM32
#   0x200  config block "MDCF" (patched by mkguest.py, read at run time)
#   0x400  32-bit code and data
#
# Build: as --32 -o testguest.o testguest.S
#        ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o testguest.bin testguest.o
#
# Plain gas syntax, no C preprocessor: '#' starts a comment.

	.set	LOAD_SECTORS, 15	# sectors 2..16 of the disk -> 0x7e00
	.set	IMAGE_BYTES, (1 + LOAD_SECTORS) * 512
	.set	COM1, 0x3f8
	.set	STACK_TOP, 0x7c00
	.set	CRC_TABLES, 0x1000	# 4 x 256 x u32 slicing-by-4 tables
	.set	CFG_MAGIC, 0x4643444d	# "MDCF" little endian
	.set	MODE_FILL, 1
	.set	MODE_DIRTY, 2
	.set	GOLDEN, 0x9e3779b1

	.text
	.code16
	.globl	_start
_start:
	cli
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	$STACK_TOP, %sp
	ljmp	$0, $boot_cs_ok		# some BIOSes enter at 07c0:0000
boot_cs_ok:
	sti
	movb	%dl, boot_drive
	call	serial_init16

	movw	$3, %si			# retries; a real drive may need a reset
read_retry:
	movb	$0x02, %ah		# CHS read: cylinder 0, head 0, sector 2..
	movb	$LOAD_SECTORS, %al
	movw	$0x0002, %cx
	xorb	%dh, %dh
	movb	boot_drive, %dl
	movw	$0x7e00, %bx
	int	$0x13
	jnc	read_ok
	xorb	%ah, %ah
	movb	boot_drive, %dl
	int	$0x13
	decw	%si
	jnz	read_retry
	movw	$msg_disk16, %si
	call	print16
	jmp	halt16

read_ok:
	movw	$0x2401, %ax		# A20 via the BIOS, then port 0x92 too
	int	$0x15
	inb	$0x92, %al
	orb	$0x02, %al
	andb	$0xfe, %al		# bit 0 would reset the machine
	outb	%al, $0x92

	cli
	lgdtl	gdt_desc
	movl	%cr0, %eax
	orl	$1, %eax
	movl	%eax, %cr0
	ljmpl	$0x08, $pm_entry

halt16:
	cli
	hlt
	jmp	halt16

serial_init16:
	movw	$init_tab, %si
1:	movw	(%si), %dx
	testw	%dx, %dx
	jz	2f
	movb	2(%si), %al
	outb	%al, %dx
	addw	$3, %si
	jmp	1b
2:	ret

print16:
	lodsb
	testb	%al, %al
	jz	2f
	movb	%al, %bl
	movw	$COM1 + 5, %dx
1:	inb	%dx, %al
	testb	$0x20, %al
	jz	1b
	movw	$COM1, %dx
	movb	%bl, %al
	outb	%al, %dx
	jmp	print16
2:	ret

	# port, value: 115200 8N1, FIFO on, DTR+RTS; interrupts off
init_tab:
	.word	COM1 + 1
	.byte	0x00
	.word	COM1 + 3
	.byte	0x80
	.word	COM1 + 0
	.byte	0x01
	.word	COM1 + 1
	.byte	0x00
	.word	COM1 + 3
	.byte	0x03
	.word	COM1 + 2
	.byte	0xc7
	.word	COM1 + 4
	.byte	0x03
	.word	0

msg_disk16:
	.asciz	"MDGUEST ERROR cannot read the guest code from the boot disk (int 13h)\r\n"
boot_drive:
	.byte	0

	.p2align 3
gdt:
	.quad	0
	.quad	0x00cf9a000000ffff	# 0x08: flat 4 GiB code
	.quad	0x00cf92000000ffff	# 0x10: flat 4 GiB data
gdt_end:
gdt_desc:
	.word	gdt_end - gdt - 1
	.long	gdt

	.org	510
	.word	0xaa55

# ---------------------------------------------------------------------------
# Config block at image offset 512 (memory 0x7e00).  mkguest.py rewrites it;
# the values below are the defaults of a freshly built image.
cfg:
cfg_magic:	.long	CFG_MAGIC
cfg_mode:	.long	MODE_FILL
cfg_start:	.long	2		# MiB
cfg_size:	.long	16		# MiB
cfg_seed:	.long	1
cfg_pace:	.long	0		# dirty mode: busy-loop turns after each page
	.org	1024

# ---------------------------------------------------------------------------
	.code32
pm_entry:
	movw	$0x10, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	%ax, %fs
	movw	%ax, %gs
	movl	$STACK_TOP, %esp
	cld

	# A20 must really be on, or the range would alias memory below 1 MiB.
	movl	$0x000ff0, %esi
	movl	$0x100ff0, %edi
	movl	(%esi), %eax
	notl	%eax
	movl	%eax, (%edi)
	cmpl	%eax, (%esi)
	jne	a20_ok
	movl	$msg_a20, %esi
	jmp	fatal
a20_ok:

	cmpl	$CFG_MAGIC, cfg_magic
	je	1f
	movl	$msg_magic, %esi
	jmp	fatal
1:	movl	cfg_mode, %eax
	cmpl	$MODE_FILL, %eax
	je	2f
	cmpl	$MODE_DIRTY, %eax
	je	2f
	movl	$msg_mode, %esi
	jmp	fatal

	# The range must lie in RAM above our code and the BIOS (>= 1 MiB) and
	# below the top of low RAM that the firmware put in CMOS.
2:	movl	cfg_start, %eax
	testl	%eax, %eax
	jz	bad_range
	movl	cfg_size, %ebx
	testl	%ebx, %ebx
	jz	bad_range
	cmpl	$4096, %eax
	jae	bad_range
	cmpl	$4096, %ebx
	jae	bad_range
	addl	%eax, %ebx		# end MiB
	call	ram_top_mib
	movl	%eax, ram_mib
	cmpl	%eax, %ebx
	ja	bad_range
	movl	cfg_start, %eax
	shll	$20, %eax
	movl	%eax, range_lo
	shll	$20, %ebx
	movl	%ebx, range_hi

	call	crc_init
	call	fill_range
	movl	range_lo, %esi
	movl	range_hi, %ecx
	call	crc_range
	movl	%eax, fill_sum

	cmpl	$MODE_DIRTY, cfg_mode
	je	dirty_main

# --- mode fill-verify --------------------------------------------------------
	movl	$msg_ready_fill, %esi
	call	print
	call	print_range
	movl	$msg_sum, %esi
	call	print
	movl	fill_sum, %eax
	call	print_hex
	movl	$msg_crlf, %esi
	call	print

verify_loop:
	call	rtc_seconds
	movl	%eax, pass_second
	movl	range_lo, %esi
	movl	range_hi, %ecx
	call	crc_range
	movl	%eax, %ebx
	incl	pass_count
	movl	$msg_verify, %esi
	call	print
	movl	pass_count, %eax
	call	print_dec
	movl	$msg_sum, %esi
	call	print
	movl	%ebx, %eax
	call	print_hex
	movl	$msg_ok, %esi
	cmpl	fill_sum, %ebx
	je	1f
	movl	$msg_bad, %esi
1:	call	print
	# Pace the passes: at least until the RTC second changes, so a pass is
	# printed about once a second however small the range is.
2:	call	rtc_seconds
	cmpl	pass_second, %eax
	je	2b
	jmp	verify_loop

# --- mode dirty --------------------------------------------------------------
dirty_main:
	movl	$msg_ready_dirty, %esi
	call	print
	call	print_range
	movl	$msg_crlf, %esi
	call	print
	call	rtc_seconds
	movl	%eax, pass_second
	xorl	%edx, %edx		# round counter
dirty_round:
	incl	%edx
	movl	range_lo, %edi
	movl	range_hi, %ecx
1:	movl	%edx, (%edi)		# a new value every round: really dirty
	# Optional pacing: CPU work between pages makes the dirty rate follow
	# the CPU time the guest gets, as a real workload's does, so CPU
	# throttling (auto-converge) can slow it down.
	movl	cfg_pace, %eax
2:	testl	%eax, %eax
	jz	3f
	decl	%eax
	jmp	2b
3:	addl	$4096, %edi
	cmpl	%ecx, %edi
	jb	1b
	# Report about once a second, not every N rounds: round speed varies
	# by orders of magnitude with and without dirty tracking.
	call	rtc_seconds
	cmpl	pass_second, %eax
	je	dirty_round
	movl	%eax, pass_second
	pushl	%edx
	movl	$msg_dirty, %esi
	call	print
	movl	(%esp), %eax
	call	print_dec
	movl	$msg_crlf, %esi
	call	print
	popl	%edx
	jmp	dirty_round

bad_range:
	movl	$msg_range, %esi
	call	print
	call	print_range
	movl	$msg_ram, %esi
	call	print
	call	ram_top_mib
	call	print_dec
	movl	$msg_ram_end, %esi
	# fall through
fatal:
	call	print
1:	cli
	hlt
	jmp	1b

# --- helpers (32-bit) --------------------------------------------------------

# Fill [range_lo, range_hi) with word(a) = xorshift32((seed ^ a) * GOLDEN).
# mkguest.py --print-sum computes the same pattern on the host.
fill_range:
	movl	range_lo, %edi
	movl	range_hi, %ecx
	movl	cfg_seed, %ebp
1:	movl	%edi, %eax
	xorl	%ebp, %eax
	imull	$GOLDEN, %eax, %eax
	movl	%eax, %edx
	shll	$13, %edx
	xorl	%edx, %eax
	movl	%eax, %edx
	shrl	$17, %edx
	xorl	%edx, %eax
	movl	%eax, %edx
	shll	$5, %edx
	xorl	%edx, %eax
	movl	%eax, (%edi)
	addl	$4, %edi
	cmpl	%ecx, %edi
	jb	1b
	ret

# Slicing-by-4 tables for the zlib CRC-32 (reflected 0xedb88320).
crc_init:
	xorl	%ecx, %ecx
1:	movl	%ecx, %eax
	movl	$8, %edx
2:	shrl	$1, %eax
	jnc	3f
	xorl	$0xedb88320, %eax
3:	decl	%edx
	jnz	2b
	movl	%eax, CRC_TABLES(,%ecx,4)
	incl	%ecx
	cmpl	$256, %ecx
	jb	1b
	# T[k][i] = (T[k-1][i] >> 8) ^ T[0][T[k-1][i] & 0xff]
	movl	$CRC_TABLES, %esi
	movl	$3 * 256, %ecx
4:	movl	(%esi), %eax
	movzbl	%al, %edx
	shrl	$8, %eax
	xorl	CRC_TABLES(,%edx,4), %eax
	movl	%eax, 1024(%esi)
	addl	$4, %esi
	decl	%ecx
	jnz	4b
	ret

# eax = zlib crc32 of [esi, ecx); ecx - esi is a multiple of 4.
crc_range:
	pushl	%ebx
	movl	$0xffffffff, %eax
1:	xorl	(%esi), %eax
	movzbl	%al, %edx
	movl	CRC_TABLES + 3072(,%edx,4), %ebx
	movzbl	%ah, %edx
	xorl	CRC_TABLES + 2048(,%edx,4), %ebx
	shrl	$16, %eax
	movzbl	%al, %edx
	xorl	CRC_TABLES + 1024(,%edx,4), %ebx
	movzbl	%ah, %edx
	xorl	CRC_TABLES(,%edx,4), %ebx
	movl	%ebx, %eax
	addl	$4, %esi
	cmpl	%ecx, %esi
	jb	1b
	notl	%eax
	popl	%ebx
	ret

# eax = MiB of RAM below 4 GiB, from the CMOS bytes the firmware set.
ram_top_mib:
	movb	$0x35, %al
	call	cmos_read
	movl	%eax, %edx
	shll	$8, %edx
	movb	$0x34, %al
	call	cmos_read
	orl	%edx, %eax		# 64 KiB units above 16 MiB
	jz	1f
	shrl	$4, %eax
	addl	$16, %eax
	ret
1:	movb	$0x31, %al
	call	cmos_read
	movl	%eax, %edx
	shll	$8, %edx
	movb	$0x30, %al
	call	cmos_read
	orl	%edx, %eax		# KiB above 1 MiB
	shrl	$10, %eax
	incl	%eax
	ret

# al = CMOS register -> eax = its value.  Bit 7 keeps NMI as it was (off).
cmos_read:
	orb	$0x80, %al
	outb	%al, $0x70
	inb	$0x71, %al
	movzbl	%al, %eax
	ret

# eax = RTC seconds register; waits out an update in progress.
rtc_seconds:
1:	movb	$0x0a, %al
	call	cmos_read
	testb	$0x80, %al
	jnz	1b
	movb	$0x00, %al
	jmp	cmos_read

# " start=<MiB> size=<MiB>"
print_range:
	movl	$msg_start, %esi
	call	print
	movl	cfg_start, %eax
	call	print_dec
	movl	$msg_size, %esi
	call	print
	movl	cfg_size, %eax
	jmp	print_dec

# Print the NUL-terminated string at esi.  Clobbers eax, esi.
print:
	pushl	%edx
1:	lodsb
	testb	%al, %al
	jz	2f
	call	putc
	jmp	1b
2:	popl	%edx
	ret

# al -> COM1, polling the line status register for an empty holding reg.
putc:
	pushl	%eax
	movw	$COM1 + 5, %dx
1:	inb	%dx, %al
	testb	$0x20, %al
	jz	1b
	popl	%eax
	movw	$COM1, %dx
	outb	%al, %dx
	ret

# eax as 8 lower-case hex digits.  Clobbers eax.
print_hex:
	pushl	%ecx
	pushl	%edx
	pushl	%ebx
	movl	%eax, %ebx
	movl	$8, %ecx
1:	roll	$4, %ebx
	movl	%ebx, %eax
	andl	$0xf, %eax
	movb	hex_digits(%eax), %al
	call	putc
	decl	%ecx
	jnz	1b
	popl	%ebx
	popl	%edx
	popl	%ecx
	ret

# eax as unsigned decimal.  Clobbers eax.
print_dec:
	pushl	%ecx
	pushl	%edx
	pushl	%ebx
	movl	$10, %ebx
	xorl	%ecx, %ecx
1:	xorl	%edx, %edx
	divl	%ebx
	pushl	%edx
	incl	%ecx
	testl	%eax, %eax
	jnz	1b
2:	popl	%eax
	addb	$'0', %al
	call	putc
	decl	%ecx
	jnz	2b
	popl	%ebx
	popl	%edx
	popl	%ecx
	ret

hex_digits:	.ascii	"0123456789abcdef"
msg_ready_fill:	.asciz	"MDGUEST READY mode=fill"
msg_ready_dirty: .asciz	"MDGUEST READY mode=dirty"
msg_start:	.asciz	" start="
msg_size:	.asciz	" size="
msg_sum:	.asciz	" sum="
msg_verify:	.asciz	"MDGUEST VERIFY pass="
msg_ok:		.asciz	" ok\r\n"
msg_bad:	.asciz	" BAD\r\n"
msg_dirty:	.asciz	"MDGUEST DIRTY round="
msg_crlf:	.asciz	"\r\n"
msg_a20:	.asciz	"MDGUEST ERROR the A20 line could not be enabled\r\n"
msg_magic:	.asciz	"MDGUEST ERROR no MDCF config block at image offset 512; write the image with mkguest.py\r\n"
msg_mode:	.asciz	"MDGUEST ERROR config mode must be 1 (fill) or 2 (dirty); write the image with mkguest.py\r\n"
msg_range:	.asciz	"MDGUEST ERROR range"
msg_ram:	.asciz	" (MiB) does not fit in RAM between 1 MiB and "
msg_ram_end:	.asciz	" MiB; give the guest more memory or a smaller range\r\n"

	.p2align 2
ram_mib:	.long	0
range_lo:	.long	0
range_hi:	.long	0
fill_sum:	.long	0
pass_count:	.long	0
pass_second:	.long	0

	.org	IMAGE_BYTES
