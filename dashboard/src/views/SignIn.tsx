import { type FormEvent, useState } from 'react';
import { ApiError, post } from '../api/client';

/**
 * Exchanges a person's JWT for a session cookie (HttpOnly, so page scripts never see it) and
 * forgets the token: it is only ever in this form's state until the request is sent.
 */
export function SignIn({ onSignedIn, notice }: { onSignedIn: () => void; notice?: string }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await post('/session', { token: token.trim() });
      setToken('');
      onSignedIn();
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? 'That token was not accepted.' : (err as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="signin">
      <form className="card signin-card" onSubmit={submit} aria-labelledby="signin-title">
        <div className="brand brand-large">
          <span className="brand-mark" aria-hidden="true" />
          ImagePod
        </div>
        <h1 id="signin-title">Sign in</h1>
        <p className="muted">
          Paste your API token. Mint one with <code>npm run token -- --sub alice</code>; the dashboard keeps a session cookie, never the
          token.
        </p>
        {notice && <p className="note">{notice}</p>}
        <label htmlFor="token">Token</label>
        <textarea
          id="token"
          name="token"
          rows={4}
          value={token}
          onChange={(e) => setToken(e.target.value)}
          autoComplete="off"
          spellCheck={false}
          required
        />
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy || token.trim() === ''}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
