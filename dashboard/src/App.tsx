import { useCallback, useEffect, useState } from 'react';
import { del, get, onUnauthorized } from './api/client';
import { LiveProvider, useLive } from './api/live';
import type { Me } from './api/types';
import { href, type Route, useRoute } from './router';
import { JobPage } from './views/JobPage';
import { Jobs } from './views/Jobs';
import { Nodes } from './views/Nodes';
import { Overview } from './views/Overview';
import { SignIn } from './views/SignIn';
import { Usage } from './views/Usage';

type Session = { state: 'loading' } | { state: 'signed-out'; notice?: string } | { state: 'signed-in'; me: Me };

/** Who is signed in comes from `GET /me` (the session cookie); a 401 anywhere returns to sign-in. */
export function App() {
  const [session, setSession] = useState<Session>({ state: 'loading' });
  const check = useCallback(() => {
    get<Me>('/me').then(
      (me) => setSession(me.kind === 'user' ? { state: 'signed-in', me } : { state: 'signed-out', notice: 'Sign in as a person.' }),
      () => setSession({ state: 'signed-out' }),
    );
  }, []);
  useEffect(check, [check]);
  useEffect(
    () =>
      onUnauthorized(() =>
        setSession((s) => (s.state === 'signed-in' ? { state: 'signed-out', notice: 'Your session ended; sign in again.' } : s)),
      ),
    [],
  );

  if (session.state === 'loading') return <p className="loading muted">Loading…</p>;
  if (session.state === 'signed-out')
    return <SignIn onSignedIn={check} {...(session.notice !== undefined && { notice: session.notice })} />;
  const signOut = () => {
    del('/session').finally(() => setSession({ state: 'signed-out' }));
  };
  return (
    <LiveProvider>
      <Shell me={session.me} onSignOut={signOut} />
    </LiveProvider>
  );
}

const TABS = [
  { key: 'overview', label: 'Overview' },
  { key: 'nodes', label: 'Nodes' },
  { key: 'jobs', label: 'Jobs' },
  { key: 'usage', label: 'Usage' },
] as const;

function Shell({ me, onSignOut }: { me: Me; onSignOut: () => void }) {
  const route = useRoute();
  const { connected } = useLive();
  const admin = me.role === 'admin';
  const section = route.path[0] ?? 'overview';
  return (
    <>
      <header className="topbar">
        <a className="brand" href={href('overview')}>
          <span className="brand-mark" aria-hidden="true" />
          ImagePod
        </a>
        <nav aria-label="main">
          <ul>
            {TABS.map((t) => (
              <li key={t.key}>
                <a href={href(t.key)} aria-current={section === t.key ? 'page' : undefined}>
                  {t.label}
                </a>
              </li>
            ))}
            {admin && (
              <li>
                <a href="/admin/queues" target="_blank" rel="noopener">
                  Bull Board ↗
                </a>
              </li>
            )}
          </ul>
        </nav>
        <div className="who">
          <span className={`live-dot ${connected ? 'on' : 'off'}`} role="status" title={connected ? 'live updates on' : 'reconnecting'}>
            <span className="visually-hidden">{connected ? 'live' : 'reconnecting'}</span>
          </span>
          <span className="user" data-testid="signed-in-as">
            {me.user_id}
            {admin && <span className="role">admin</span>}
          </span>
          <button type="button" className="small" onClick={onSignOut}>
            Sign out
          </button>
        </div>
      </header>
      <main className="content">
        <Page route={route} me={me} />
      </main>
    </>
  );
}

function Page({ route, me }: { route: Route; me: Me }) {
  const admin = me.role === 'admin';
  switch (route.path[0] ?? 'overview') {
    case 'nodes':
      return <Nodes admin={admin} />;
    case 'jobs': {
      const id = route.path[1];
      return id ? <JobPage key={id} id={id} /> : <Jobs admin={admin} route={route} />;
    }
    case 'usage':
      return <Usage admin={admin} userId={me.user_id ?? ''} />;
    default:
      return <Overview admin={admin} />;
  }
}
