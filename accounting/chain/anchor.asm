; Anchor: the EVM contract that anchors accounting epochs on chain.
;
; Hand-assembled so that building Stockade needs no Solidity compiler.
; TestAssembly assembles this file and checks it against anchor.bin, the
; creation code Deploy sends (go test -run TestAssembly -update rewrites
; it); anchor.abi.json is its ABI.
;
; Interface (Solidity ABI):
;   anchor(uint256 epoch, bytes32 root)  selector a0ca2d08
;       owner only; epoch must be above lastEpoch(); stores epoch and emits
;       Anchored(uint256 indexed epoch, bytes32 root)   topic 2946f6d7...
;   lastEpoch() view returns (uint256)    selector 06a4c983   (0 before any)
;   owner() view returns (address)        selector 8da5cb5b
;   errors: NotOwner() 30cd7471, StaleEpoch(uint256 last) c6a07706
;   anything else, and any call carrying ether, reverts with no data.
;
; State: storage slot 0 holds NOT lastEpoch (its bitwise complement), the
; only storage write. The complement keeps the slot nonzero from the
; constructor on, so the deploy pays for creating the slot and every anchor,
; the first included, is the same nonzero-to-nonzero write (creating a slot
; costs ~20,000 gas, ~100,000 under EIP-8037 state gas). lastEpoch starts at
; 0, so the first epoch is 1. The owner (the deployer) is not in storage: the
; constructor appends it to the runtime code as 20 bytes of data, read back
; with CODECOPY, which saves a cold SLOAD (2100 gas) on every anchor.
;
; Opcodes: none newer than Constantinople (SHL/SHR), so the contract deploys
; on any EVM chain; PUSH0 would save a few gas but needs Shanghai.
;
; Syntax: "name:" defines a label (an offset in its section); PUSHn takes a
; hex constant, a label, or runtime.start / runtime.size. Stack comments
; list the top last.

section constructor
        CALLVALUE                       ; [value]
        PUSH1 fail                      ; [value fail]
        JUMPI                           ; []  refuse ether
        PUSH1 0x00                      ; [0]
        NOT                             ; [~0]
        PUSH1 0x00                      ; [~0 0]
        SSTORE                          ; []  slot 0 = NOT 0: lastEpoch 0
        PUSH1 runtime.size              ; [n]
        DUP1                            ; [n n]
        PUSH1 runtime.start             ; [n n start]
        PUSH1 0x00                      ; [n n start 0]
        CODECOPY                        ; [n]  mem[0:n] = runtime
        CALLER                          ; [n caller]
        PUSH1 0x60                      ; [n caller 96]
        SHL                             ; [n caller<<96]
        DUP2                            ; [n caller<<96 n]
        MSTORE                          ; [n]  mem[n:n+20] = owner
        PUSH1 0x14                      ; [n 20]
        ADD                             ; [n+20]
        PUSH1 0x00                      ; [n+20 0]
        RETURN                          ; code = runtime ++ owner
fail:
        JUMPDEST
        PUSH1 0x00
        DUP1
        REVERT

section runtime
        CALLVALUE                       ; [value]
        PUSH1 fail                      ; [value fail]
        JUMPI                           ; []  non-payable
        PUSH1 0x00                      ; [0]
        CALLDATALOAD                    ; [word]
        PUSH1 0xe0                      ; [word 224]
        SHR                             ; [sel]
        DUP1                            ; [sel sel]
        PUSH4 0xa0ca2d08                ; [sel sel anchor]
        EQ                              ; [sel eq]
        PUSH1 anchor                    ; [sel eq anchor]
        JUMPI                           ; [sel]
        DUP1                            ; [sel sel]
        PUSH4 0x06a4c983                ; [sel sel lastEpoch]
        EQ                              ; [sel eq]
        PUSH1 last                      ; [sel eq last]
        JUMPI                           ; [sel]
        PUSH4 0x8da5cb5b                ; [sel owner]
        EQ                              ; [eq]
        PUSH1 owner                     ; [eq owner]
        JUMPI                           ; []
fail:
        JUMPDEST                        ; unknown selector, ether, short data
        PUSH1 0x00
        DUP1
        REVERT

anchor:
        JUMPDEST                        ; [sel]
        POP                             ; []
        PUSH1 0x44                      ; [68]
        CALLDATASIZE                    ; [68 size]
        LT                              ; [size<68]
        PUSH1 fail                      ; [short fail]
        JUMPI                           ; []  need selector + 2 words
        PUSH1 0x14                      ; [20]
        DUP1                            ; [20 20]
        CODESIZE                        ; [20 20 codesize]
        SUB                             ; [20 codesize-20]
        PUSH1 0x0c                      ; [20 codesize-20 12]
        CODECOPY                        ; []  mem[0:32] = owner (mem starts zeroed)
        PUSH1 0x00                      ; [0]
        MLOAD                           ; [owner]
        CALLER                          ; [owner caller]
        EQ                              ; [isOwner]
        PUSH1 isowner                   ; [isOwner isowner]
        JUMPI                           ; []
        PUSH4 0x30cd7471                ; [NotOwner]
        PUSH1 0xe0                      ; [NotOwner 224]
        SHL                             ; [NotOwner<<224]
        PUSH1 0x00                      ; [NotOwner<<224 0]
        MSTORE                          ; []  mem[0:4] = NotOwner()
        PUSH1 0x04                      ; [4]
        PUSH1 0x00                      ; [4 0]
        REVERT                          ; revert NotOwner()
isowner:
        JUMPDEST                        ; []
        PUSH1 0x04                      ; [4]
        CALLDATALOAD                    ; [epoch]
        PUSH1 0x00                      ; [epoch 0]
        SLOAD                           ; [epoch ~last]
        NOT                             ; [epoch last]
        DUP1                            ; [epoch last last]
        DUP3                            ; [epoch last last epoch]
        GT                              ; [epoch last epoch>last]
        PUSH1 fresh                     ; [epoch last gt fresh]
        JUMPI                           ; [epoch last]
        PUSH4 0xc6a07706                ; [epoch last StaleEpoch]
        PUSH1 0xe0                      ; [epoch last StaleEpoch 224]
        SHL                             ; [epoch last StaleEpoch<<224]
        PUSH1 0x00                      ; [epoch last StaleEpoch<<224 0]
        MSTORE                          ; [epoch last]  mem[0:4] = selector
        PUSH1 0x04                      ; [epoch last 4]
        MSTORE                          ; [epoch]  mem[4:36] = last
        PUSH1 0x24                      ; [epoch 36]
        PUSH1 0x00                      ; [epoch 36 0]
        REVERT                          ; revert StaleEpoch(last)
fresh:
        JUMPDEST                        ; [epoch last]
        POP                             ; [epoch]
        DUP1                            ; [epoch epoch]
        NOT                             ; [epoch ~epoch]
        PUSH1 0x00                      ; [epoch ~epoch 0]
        SSTORE                          ; [epoch]  lastEpoch = epoch
        PUSH1 0x24                      ; [epoch 36]
        CALLDATALOAD                    ; [epoch root]
        PUSH1 0x00                      ; [epoch root 0]
        MSTORE                          ; [epoch]  mem[0:32] = root
        PUSH32 0x2946f6d79e30b36612401c9600819a1e622cf156a41e314844f4d582f06d242a
                                        ; [epoch Anchored]
        PUSH1 0x20                      ; [epoch Anchored 32]
        PUSH1 0x00                      ; [epoch Anchored 32 0]
        LOG2                            ; []  Anchored(epoch indexed, root)
        STOP

last:
        JUMPDEST                        ; [sel]
        PUSH1 0x00                      ; [sel 0]
        SLOAD                           ; [sel ~last]
        NOT                             ; [sel last]
        PUSH1 0x00                      ; [sel last 0]
        MSTORE                          ; [sel]
        PUSH1 0x20                      ; [sel 32]
        PUSH1 0x00                      ; [sel 32 0]
        RETURN                          ; return lastEpoch

owner:
        JUMPDEST                        ; []
        PUSH1 0x14                      ; [20]
        DUP1                            ; [20 20]
        CODESIZE                        ; [20 20 codesize]
        SUB                             ; [20 codesize-20]
        PUSH1 0x0c                      ; [20 codesize-20 12]
        CODECOPY                        ; []  mem[12:32] = owner
        PUSH1 0x20                      ; [32]
        PUSH1 0x00                      ; [32 0]
        RETURN                          ; return owner
        ; the constructor appends the owner's 20 bytes here
