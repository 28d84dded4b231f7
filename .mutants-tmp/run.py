import subprocess, re, os, shutil
root='/work/main'
M=root+'/.mutants-tmp'
mods={'outlier-detector':[
 ('ejected * 100 < c.maxEjectionPercent','ejected * 100 <= c.maxEjectionPercent'),
 ('this.decay(o, now); // step 3',';'),
 ('o.consecutiveGatewayErrors >= c.consecutiveGatewayErrors','o.consecutiveGatewayErrors > c.consecutiveGatewayErrors'),
 ('if (now < signals.ejectedUntil)','if (false)'),
 ('gateway ? o.consecutiveGatewayErrors + 1 : 0','gateway ? o.consecutiveGatewayErrors + 1 : o.consecutiveGatewayErrors'),
 ('Math.min(c.baseEjectionMs * o.timesEjected, c.maxEjectionMs)','c.baseEjectionMs * o.timesEjected'),
 ('|| !current.healthy || current.draining',''),
 ('if (s.signals === signals)','if (s === endpoint)'),
 ('o.timesEjected -= steps;','o.timesEjected -= 1;'),
 ('o.decayFromMs += steps * interval;',';'),
],'connection-limits':[
 ('this.slots = undefined;',';'),
 ('        s.drain();\n',''),
 ('return limit > 0 && count >= limit;','return count >= limit;'),
 ('w.resolve(undefined);',';'),
 ('w.granted?.release();',';'),
 ('const w = this.head;','const w = this.tail;'),
 ('if (this.active > 0)\n            this.active--;','if (this.active > 0)\n            this.active -= 0;'),
]}
tests={'outlier-detector':'outlier-detector.test.js','connection-limits':'connection-limits.test.js'}
for mod,muts in mods.items():
  src=open(f'{root}/sidecar/dist/resilience/{mod}.js').read()
  t=open(f'{root}/tests/dist/unit/sidecar/resilience/{tests[mod]}').read()
  t=t.replace(f'@trellis/sidecar/resilience/{mod}', f'./{mod}.js').replace('../balancer/fixtures.js', root+'/tests/dist/unit/sidecar/balancer/fixtures.js')
  # make sidecar-internal imports absolute
  for i,(a,b) in enumerate(muts):
    assert a in src, (mod,a)
    m=src.replace(a,b,1)
    m=m.replace('"../balancer/', '"'+root+'/sidecar/dist/balancer/').replace('"../metrics/', '"'+root+'/sidecar/dist/metrics/')
    d=f'{M}/{mod}-{i}'; os.makedirs(d,exist_ok=True)
    open(f'{d}/{mod}.js','w').write(m); open(f'{d}/t.test.js','w').write(t)
    r=subprocess.run([root+'/node_modules/.bin/node','--test',f'{d}/t.test.js'],capture_output=True,text=True)
    fails=re.search(r'ℹ fail (\d+)',r.stdout)
    print(mod,i,'killed' if fails and fails.group(1)!='0' else 'SURVIVED', fails.group(1) if fails else r.stderr[-300:])
