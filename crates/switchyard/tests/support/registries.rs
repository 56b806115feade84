//! A `registry` BackendService behind a catch-all route, served by the real binary
//! (standalone): what the registry tests and the discovery benchmark start from.

use super::{ConfigDir, Switchyard};

/// BackendService `orders` with `registry: <registry>` (flow YAML) and ApiRoute `orders`
/// sending every path to it.
pub fn route_and_backend(registry: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: orders}}\nspec:\n  registry: {registry}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: orders}}\n\
         spec: {{match: {{path: /, pathType: Prefix}}, backendRefs: [{{name: orders}}]}}\n"
    )
}

/// A standalone gateway on a folder holding `yaml`, ready.
pub async fn gateway(yaml: &str) -> (ConfigDir, Switchyard) {
    let config = ConfigDir::with(&[("orders.yaml", yaml)]);
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    (config, gw)
}
