/* OHIF 3 configuration for scripts/bench-viewer, served as /app-config.js by
 * proxy.js in place of the one in @ohif/app's dist. One DICOMweb data source
 * on the page's own origin: proxy.js forwards /dicom-web/* to radhub with a
 * bearer token, so OHIF needs no authentication of its own.
 *
 * Settings that differ from OHIF's shipped default, and why:
 * - the data source is radhub, a full DICOMweb server: staticWado false
 *   (radhub filters QIDO itself), qidoSupportsIncludeField true, and
 *   supportsFuzzyMatching false;
 * - studyPrefetcher enabled: without it OHIF 3.13 fetches only the slices
 *   it shows, so "every slice displayable" would never happen on its own.
 *   radhub's viewer loads the whole series by design; this is OHIF's own
 *   switch for doing the same (values as in OHIF's config/dev.js);
 * - showStudyList false, no thumbnails of other studies to fetch.
 * Everything else (request pools, web workers, rendering) is OHIF's default.
 */
window.config = {
  routerBasename: null,
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: false,
  maxNumberOfWebWorkers: 3,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  maxNumRequests: { interaction: 100, thumbnail: 5, prefetch: 25 },
  studyPrefetcher: {
    enabled: true,
    displaySetsCount: 2,
    maxNumPrefetchRequests: 10,
    order: 'closest',
  },
  defaultDataSourceName: 'radhub',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'radhub',
      configuration: {
        friendlyName: 'radhub (through the bench proxy)',
        name: 'radhub',
        wadoUriRoot: window.location.origin + '/dicom-web',
        qidoRoot: window.location.origin + '/dicom-web',
        wadoRoot: window.location.origin + '/dicom-web',
        qidoSupportsIncludeField: true,
        supportsReject: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: false,
        singlepart: 'bulkdata,video',
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
