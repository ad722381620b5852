// The shell: header with navigation and the connection indicator, the page for the current route,
// and the token dialog. Starts the app's one WatchJobs feed.

import { useEffect } from "react";
import { authStore } from "./api/auth";
import { ConnectionIndicator } from "./components/ConnectionIndicator";
import { Link } from "./components/Link";
import { TokenDialog } from "./components/TokenDialog";
import { JobPage } from "./pages/JobPage";
import { JobsPage } from "./pages/JobsPage";
import { NewJobPage } from "./pages/NewJobPage";
import { NodesPage } from "./pages/NodesPage";
import { paths, useRoute, type Route } from "./lib/router";
import { ServicesContext, type Services } from "./state/services";

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case "jobs":
      return <JobsPage />;
    case "job":
      return <JobPage key={route.id} id={route.id} />;
    case "new":
      return <NewJobPage />;
    case "nodes":
      return <NodesPage />;
    default:
      return (
        <section>
          <h1>Not found</h1>
          <p>
            Nothing lives at <code>{route.path}</code>. <Link to={paths.jobs}>Go to the jobs.</Link>
          </p>
        </section>
      );
  }
}

export function App({ services }: { services: Services }) {
  const route = useRoute();

  useEffect(() => {
    services.feed.start();
    const online = () => {
      services.connection.setBrowserOnline(true);
      services.feed.wake();
    };
    const offline = () => services.connection.setBrowserOnline(false);
    window.addEventListener("online", online);
    window.addEventListener("offline", offline);
    if (typeof navigator !== "undefined" && navigator.onLine === false) offline();
    return () => {
      window.removeEventListener("online", online);
      window.removeEventListener("offline", offline);
      services.feed.stop();
    };
  }, [services]);

  const current = (page: Route["page"]) => (route.page === page ? "page" : undefined);
  return (
    <ServicesContext.Provider value={services}>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="app-header">
        <Link to={paths.jobs} className="brand">
          Reelay
        </Link>
        <nav aria-label="Main">
          <Link to={paths.jobs} aria-current={current("jobs")} data-testid="nav-jobs">
            Jobs
          </Link>
          <Link to={paths.newJob} aria-current={current("new")} data-testid="nav-new-job">
            New job
          </Link>
          <Link to={paths.nodes} aria-current={current("nodes")} data-testid="nav-nodes">
            Nodes
          </Link>
        </nav>
        <ConnectionIndicator tracker={services.connection} />
      </header>
      <main id="main" tabIndex={-1}>
        <Page route={route} />
      </main>
      <TokenDialog auth={authStore} />
    </ServicesContext.Provider>
  );
}
