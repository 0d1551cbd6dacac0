# CPU check (no GPU) of src/cuda/gemm.cu's shared-memory layout: emulates one
# pipeline stage as the loader writes it (swizzled 16-byte chunks) and the
# fragment loads of every warp/lane, and verifies that each mma.sync m16n8k16
# pairs weight and activation elements of the same k (the K permutation), that
# each k16 group is covered exactly once, and that the shared loads are free of
# bank conflicts. Keep it in step with gemm.cu. Run: python3 tests/gpu/gemm_layout_check.py
# Emulate one stage: loader swizzle writes tags, readers fetch fragments; check MMA pairing.
import itertools
def check(WB, NT8):
    BT=16*NT8; W_ROW=64*WB; W_STAGE=128*W_ROW
    sm={}
    WCH=W_ROW//16; WI=128*WCH//256
    for tid in range(256):
        w_ch=tid%WCH; w_r0=tid//WCH
        if WB==1: d0=w_r0*W_ROW+((w_ch^((w_r0>>1)&3))<<4)
        else: d0=w_r0*W_ROW+((((w_ch>>1)^(w_r0&3))<<1|(w_ch&1))<<4)
        for i in range(WI):
            r=w_r0+i*(256//WCH); dst=d0+i*(256//WCH)*W_ROW
            kc=w_ch*(16//WB)
            for b in range(16):
                sm[dst+b]=('W',r,kc+b//WB,b%WB)
        x_r0=tid>>3; x_ch=tid&7
        xd0=W_STAGE+x_r0*128+((((x_ch>>1)^(x_r0&3))<<1|(x_ch&1))<<4)
        for i in range((BT*8+255)//256):
            if tid+i*256>=BT*8: break
            r=x_r0+32*i; dst=xd0+i*32*128
            for b in range(16): sm[dst+b]=('X',r,x_ch*8+b//2,b%2)
    assert len(sm)==W_STAGE+BT*128, (len(sm))
    def rd(addr,n):  # returns list of element tags (k) in order of halves/bytes
        return [sm[addr+b] for b in range(n)]
    for warp in range(8):
        wm=warp&3; wt=warp>>2
        for j in range(4):
            A={}; B={}
            for lane in range(32):
                g=lane>>2;t=lane&3
                wsw=((g>>1)&3) if WB==1 else (g&3); xsw=g&3
                for i in range(2):
                    w_off=(wm*32+i*16+g)*W_ROW+(4*t if WB==1 else 8*t)
                    if WB==1:
                        base=w_off+((j^wsw)<<4)
                        lo=rd(base,4); hi=rd(base+8*W_ROW,4)
                        # a0=(lo0,lo1) a2=(lo2,lo3) a1=(hi0,hi1) a3=(hi2,hi3)
                        regs={0:lo[0:2],2:lo[2:4],1:hi[0:2],3:hi[2:4]}
                    else:
                        base=w_off+((j^wsw)<<5)
                        lo=rd(base,8); hi=rd(base+8*W_ROW,8)
                        regs={0:lo[0:4:2],2:lo[4:8:2],1:hi[0:4:2],3:hi[4:8:2]}
                        for v in lo+hi: pass
                    # logical: a0 row g k 2t,2t+1; a1 row g+8; a2 row g k 2t+8; a3 row g+8 k 2t+8
                    for reg,(rowoff,koff) in {0:(0,0),1:(8,0),2:(0,8),3:(8,8)}.items():
                        for e in range(2):
                            tag=regs[reg][e]
                            assert tag[0]=='W'
                            A[(i,g+rowoff,2*t+koff+e)]=(tag[1],tag[2])
                for n in range(NT8):
                    off=(wt*(BT//2)+n*8+g)*128+8*t+((j^xsw)<<5)
                    v=rd(W_STAGE+off,8)
                    b0=v[0:4:2]; b1=v[4:8:2]
                    for e in range(2):
                        B[(n,2*t+e,g)]=(b0[e][1],b0[e][2]); B[(n,2*t+8+e,g)]=(b1[e][1],b1[e][2])
            # MMA semantic: C[i][n][r][c] = sum_k A[i][r][k]*B[n][k][c]
            for i in range(2):
                for n in range(NT8):
                    for r in range(16):
                        for c in range(8):
                            ks=[]
                            for k in range(16):
                                wr,wk=A[(i,r,k)]; xr,xk=B[(n,k,c)]
                                assert wk==xk, (WB,NT8,warp,j,i,n,r,c,k,wk,xk)
                                assert wr==wm*32+i*16+r and xr==wt*(BT//2)+n*8+c
                                ks.append(wk)
                            assert sorted(ks)==list(range(16*j,16*j+16)), ks
    # bank conflict check for reads
    def conflicts(addrs_by_lane, width):
        # phases: 128 bytes per phase
        per=128//width; worst=1
        lanes=list(range(32))
        for p in range(0,32,per):
            banks={}
            for l in lanes[p:p+per]:
                a=addrs_by_lane[l]
                for w in range(width//4):
                    bk=((a+4*w)//4)%32; banks.setdefault(bk,set()).add((a+4*w)//4)
            worst=max(worst,max(len(s) for s in banks.values()))
        return worst
    worst=1
    for warp in range(8):
        wm=warp&3; wt=warp>>2
        for j in range(4):
            for i in range(2):
                for half in (0,8):
                    ad=[]
                    for lane in range(32):
                        g=lane>>2;t=lane&3
                        wsw=((g>>1)&3) if WB==1 else (g&3)
                        w_off=(wm*32+i*16+g)*W_ROW+(4*t if WB==1 else 8*t)
                        ad.append(w_off+((j^wsw)<<(4 if WB==1 else 5))+half*W_ROW)
                    worst=max(worst,conflicts(ad,4 if WB==1 else 8))
            for n in range(NT8):
                ad=[(wt*(BT//2)+n*8+(l>>2))*128+8*(l&3)+((j^((l>>2)&3))<<5) for l in range(32)]
                worst=max(worst,conflicts(ad,8))
    print("WB",WB,"NT8",NT8,"mapping ok, worst bank conflict way:",worst)
for WB in (1,2):
    for NT8 in (2,4,8,10): check(WB,NT8)
