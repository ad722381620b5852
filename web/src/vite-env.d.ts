// Types for Vite's client-side imports (CSS side-effect imports, import.meta.env).
/// <reference types="vite/client" />
