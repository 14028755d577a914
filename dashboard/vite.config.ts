import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const here = new URL('.', import.meta.url).pathname;
/** Where `npm run dev:dashboard` sends API calls: an API started with `npm run local` or `npm start`. */
const api = process.env.IMAGEPOD_DASHBOARD_API ?? 'http://localhost:8000';

export default defineConfig({
  root: here,
  base: '/',
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: true },
  server: {
    // The dashboard imports the API's schema types and closed sets from ../src.
    fs: { allow: ['..'] },
    // The Host header is kept, so the API's same-origin check sees the page's own origin.
    proxy: { '/gpu-workers': { target: api }, '/admin': { target: api } },
  },
});
